"""Webhook URL checks (SSRF guard), secrets at rest, signatures with a rotated secret, and the
gateway's rendering of the mail server's replies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shipmail import utc
from shipmail.inbound.backend import Reply
from shipmail.inbound.resolve import base_address
from shipmail.webhooks import secrets
from shipmail.webhooks.models import Webhook
from shipmail.webhooks.service import resolved_problem, signature, url_problem
from tests.integration.webhook_receiver import signatures_valid


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://10.1.2.3/x",
        "https://192.168.0.7/x",
        "https://172.16.5.4/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://0.0.0.0/x",
        "https://localhost/x",
        "https://user:pw@hooks.example.com/x",
        "ftp://hooks.example.com/x",
        "https:///nohost",
    ],
)
def test_refused_urls(url: str) -> None:
    assert url_problem(url, allow_private=False) is not None


def test_allowed_urls() -> None:
    assert url_problem("https://hooks.example.com/x?y=1", allow_private=False) is None
    assert url_problem("https://93.184.216.34:8443/x", allow_private=False) is None
    # The operator's switch allows http:// and private targets (what the tests use).
    assert url_problem("http://127.0.0.1:8080/hook", allow_private=True) is None
    assert url_problem("ftp://127.0.0.1/hook", allow_private=True) is not None


async def test_names_are_resolved_and_checked() -> None:
    assert await resolved_problem("https://localhost./x", allow_private=False) is not None
    assert await resolved_problem("https://ip6-localhost/x", allow_private=False) is not None
    assert await resolved_problem("https://no-such-host.invalid/x", allow_private=False) is not None


def test_secrets_are_sealed_and_signatures_follow_a_rotation() -> None:
    key = b"service-key"
    old, new = secrets.new_secret(), secrets.new_secret()
    assert old.startswith("whsec_") and old != new
    sealed = secrets.seal(old, key)
    assert old not in sealed and old.removeprefix("whsec_") not in sealed
    assert secrets.unseal(sealed, key) == old
    now = utc.now()
    hook = Webhook(
        id="whk_1",
        organization_id="org_1",
        url="https://x.example",
        secret=secrets.seal(new, key),
        previous_secret=sealed,
        previous_secret_expires_at=now + timedelta(hours=24),
        created_at=now,
        updated_at=now,
    )
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp()))}
    body = b'{"type":"webhook.test"}'
    headers["webhook-signature"] = signature(hook, key, "msg_1", now, body)
    assert signatures_valid(new, headers, body) == [True, False]
    assert signatures_valid(old, headers, body) == [False, True]
    # After the grace period only the new secret signs.
    later = now + timedelta(hours=25)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(later.timestamp()))}
    headers["webhook-signature"] = signature(hook, key, "msg_1", later, body)
    assert signatures_valid(new, headers, body) == [True]


def test_replies_go_back_verbatim() -> None:
    assert Reply(250, ("2.1.5 Ok SESSIONID=<x>",)).wire() == "250 2.1.5 Ok SESSIONID=<x>"
    assert Reply(452, ("4.2.2 Over quota", "try later")).wire() == "452-4.2.2 Over quota\r\n452 try later"
    assert Reply(250, ()).wire() == "250"


def test_subaddresses_resolve_to_their_base() -> None:
    assert base_address("hello+news@example.com") == "hello@example.com"
    assert base_address("hello@example.com") == "hello@example.com"
    assert base_address("a+b+c@example.com") == "a@example.com"
