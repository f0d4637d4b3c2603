"""Webhooks on the real Cyrus: a receiver on 127.0.0.1 gets ``message.received`` for mail
delivered over LMTP and through the sandbox, once each, with the stored message's ids, signed per
Standard Webhooks (checked by an implementation of the scheme written out in
:mod:`tests.integration.webhook_receiver`); a receiver answering 500 three times gets the event
on the fourth attempt; a replay carries the same ``webhook-id``; a rotation signs with both
secrets; a matched rule is a ``mailbox.rule_matched`` webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.conftest import ApiEnv
from tests.integration.corpus import corpus_bytes, unique
from tests.integration.webhook_receiver import Receiver, signatures_valid, verify


@pytest.fixture(autouse=True)
def _webhook_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """http:// to 127.0.0.1 allowed; retries 0.2 s, 0.4 s, 0.8 s ... apart (with jitter)."""
    monkeypatch.setenv("SHIPMAIL_WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("SHIPMAIL_WEBHOOK_RETRY_BASE", "0.2")
    yield


def create(api: ApiEnv, url: str, events: list[str]) -> dict[str, Any]:
    r = api.client.post("/v1/webhooks", json={"url": url, "events": events}, headers=api.auth())
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["secret"].startswith("whsec_") and body["active"] is True
    return body


def deliveries(api: ApiEnv, webhook_id: str) -> list[dict[str, Any]]:
    r = api.client.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 100}, headers=api.auth())
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def settled(api: ApiEnv, webhook_id: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The webhook's deliveries once ``count`` of them are no longer pending (the receiver has the
    request a moment before the attempt's outcome is committed)."""
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(api, webhook_id)
        if sum(d["status"] != "pending" for d in found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_message_received_over_lmtp_and_sandbox_once_each_signed(api: ApiEnv) -> None:
    mbx = api.new_mailbox("hooks-received.example", "hello")
    with Receiver() as receiver:
        hook = create(api, receiver.url, ["message.received"])
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), "hook")
        assert api.lmtp(mbx["address"], raw) == {}
        r = api.client.post(
            f"/v1/mailboxes/{mbx['id']}/sandbox/inbound",
            json={"from": "alice@sender.example", "subject": "Sandboxed", "text": "Hi"},
            headers=api.auth(),
        )
        assert r.status_code == 201, r.text
        sandboxed = r.json()["email_id"]  # the sandbox answers a Message (msg_...) naming the stored email
        got = receiver.wait_for(2)
        time.sleep(1.0)  # nothing more comes: once each
        assert len(receiver.requests) == 2
        for request in got:
            assert verify(hook["secret"], request), request.headers
        bodies = [json.loads(g.body) for g in got]
        assert [b["type"] for b in bodies] == ["message.received", "message.received"]
        listed = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/messages", headers=api.auth()).json()["data"]
        assert {b["data"]["id"] for b in bodies} == {m["id"] for m in listed}
        assert bodies[1]["data"]["id"] == sandboxed and bodies[1]["data"]["subject"] == "Sandboxed"
        assert all(b["data"]["mailbox_id"] == mbx["id"] for b in bodies)
        assert len({g.headers["webhook-id"] for g in got}) == 2
        # The official SDK's verify_webhook scheme (x-shipmail-*) holds too.
        for request in got:
            signed = f"v1={request.headers['x-shipmail-timestamp']}\n".encode() + request.body
            mac = hmac.new(hook["secret"].encode(), signed, hashlib.sha256).hexdigest()
            assert request.headers["x-shipmail-signature"] == mac
        # A wrong secret does not verify.
        assert not verify("whsec_" + "A" * 44, got[0])
    done = settled(api, hook["id"], 2)
    assert [d["status"] for d in done] == ["delivered", "delivered"] and [d["attempts"] for d in done] == [1, 1]


def test_500_three_times_then_200_and_replay_keeps_the_webhook_id(api: ApiEnv) -> None:
    mbx = api.new_mailbox("hooks-retry.example", "hello")
    with Receiver(answers=[500, 500, 500]) as receiver:
        hook = create(api, receiver.url, ["message.received"])
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), "retry")
        assert api.lmtp(mbx["address"], raw) == {}
        got = receiver.wait_for(4, timeout=30)
        assert len({g.headers["webhook-id"] for g in got}) == 1  # the same message, four attempts
        assert all(verify(hook["secret"], g) for g in got)
        (delivery,) = settled(api, hook["id"], 1)
        assert delivery["status"] == "delivered" and delivery["attempts"] == 4
        assert delivery["last_status_code"] == 200 and delivery["last_error"] is None
        detail = api.client.get(f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}", headers=api.auth()).json()
        assert detail["payload"] == json.loads(got[-1].body) and detail["next_attempt_at"] is None

        r = api.client.post(f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/replay", headers=api.auth())
        assert r.status_code == 201, r.text
        assert r.json()["replayed_from_delivery_id"] == delivery["id"]
        again = receiver.wait_for(5)[-1]
        assert again.headers["webhook-id"] == got[0].headers["webhook-id"]
        assert json.loads(again.body) == json.loads(got[0].body) and verify(hook["secret"], again)


def test_rotation_signs_with_both_secrets_and_test_events(api: ApiEnv) -> None:
    with Receiver() as receiver:
        hook = create(api, receiver.url, ["message.received"])
        r = api.client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=api.auth())
        assert r.status_code == 200, r.text
        new = r.json()["secret"]
        assert new.startswith("whsec_") and new != hook["secret"]
        r = api.client.post(f"/v1/webhooks/{hook['id']}/test", headers=api.auth())
        assert r.status_code == 202, r.text
        (request,) = receiver.wait_for(1)
        assert signatures_valid(new, request.headers, request.body) == [True, False]
        assert signatures_valid(hook["secret"], request.headers, request.body) == [False, True]
        body = json.loads(request.body)
        assert body["type"] == "webhook.test" and body["data"]["webhook_id"] == hook["id"]
        # The secret is never shown again.
        shown = api.client.get(f"/v1/webhooks/{hook['id']}", headers=api.auth()).json()
        assert "secret" not in shown and hook["secret"] not in json.dumps(shown)


def test_a_matched_send_webhook_rule_is_a_rule_matched_webhook(api: ApiEnv) -> None:
    mbx = api.new_mailbox("hooks-rules.example", "hello")
    rule = {
        "id": str(uuid.uuid4()),
        "name": "Invoices",
        "enabled": True,
        "position": 0,
        "match_mode": "all",
        "stop": False,
        "conditions": [{"type": "subject_contains", "value": "invoice"}],
        "actions": [{"type": "mark_read"}, {"type": "send_webhook"}],
    }
    # Matches too, but has no send_webhook: an event of the stream, not a webhook.
    quiet = {**rule, "id": str(uuid.uuid4()), "name": "Quiet", "position": 1, "actions": [{"type": "star"}]}
    r = api.client.put(f"/v1/mailboxes/{mbx['id']}/rules", json={"rules": [rule, quiet]}, headers=api.auth())
    assert r.status_code == 200, r.text
    with Receiver() as receiver:
        hook = create(api, receiver.url, ["mailbox.rule_matched"])
        raw = (
            b"From: ann@billing.example\r\nTo: hello@hooks-rules.example\r\nSubject: Invoice 7\r\n"
            b"Message-ID: <hook-rule-1@billing.example>\r\n\r\nPay.\r\n"
        )
        assert api.lmtp(mbx["address"], raw) == {}
        (request,) = receiver.wait_for(1)
        assert verify(hook["secret"], request)
        body = json.loads(request.body)
        assert body["type"] == "mailbox.rule_matched"
        assert body["data"]["rule_id"] == rule["id"] and body["data"]["mailbox_id"] == mbx["id"]
        time.sleep(1.0)
        assert len(receiver.requests) == 1  # not the rule without send_webhook
    stream = api.client.get(f"/v1/mailboxes/{mbx['id']}/events", headers=api.auth()).json()["data"]
    matched = [e["data"]["rule_id"] for e in stream if e["type"] == "mailbox.rule_matched"]
    assert matched == [rule["id"], quiet["id"]]


def test_webhooks_crud_and_tenancy(api: ApiEnv) -> None:
    with Receiver() as receiver:
        hook = create(api, receiver.url, ["message.received"])
        r = api.client.patch(
            f"/v1/webhooks/{hook['id']}",
            json={"events": ["message.received", "mailbox.rule_matched"], "description": "ops", "active": False},
            headers=api.auth(),
        )
        assert r.status_code == 200, r.text
        assert r.json()["active"] is False and r.json()["description"] == "ops"
        listed = api.client.get("/v1/webhooks", headers=api.auth()).json()["data"]
        assert [w["id"] for w in listed] == [hook["id"]]
        stranger = api.new_key(org="elsewhere")
        for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/test"), ("GET", "/deliveries")):
            r = api.client.request(
                method,
                f"/v1/webhooks/{hook['id']}{path}",
                json={} if method == "PATCH" else None,
                headers=api.auth(stranger),
            )
            assert r.status_code == 404, (method, path, r.text)
        reader = api.new_key(scopes=["webhooks:read"])
        assert api.client.delete(f"/v1/webhooks/{hook['id']}", headers=api.auth(reader)).status_code == 403
        assert api.client.delete(f"/v1/webhooks/{hook['id']}", headers=api.auth()).status_code == 204
        assert api.client.get(f"/v1/webhooks/{hook['id']}", headers=api.auth()).status_code == 404


SDK_SCRIPT = r"""
import json, sys, time
from shipmail import Shipmail, verify_webhook
base, key, url = sys.argv[1:4]
client = Shipmail(key, base_url=base + "/v1")
made = client.webhooks.create({"url": url, "events": ["message.received"], "description": "sdk"})
out = {"secret": made["secret"], "id": made["id"]}
out["listed"] = [w["id"] for w in client.webhooks.list()["data"]]
out["got"] = client.webhooks.get(made["id"])["description"]
out["updated"] = client.webhooks.update(made["id"], {"description": None})["description"]
out["test_event"] = client.webhooks.test(made["id"])["event_id"]
for _ in range(100):
    found = client.webhooks.list_deliveries(made["id"])["data"]
    if found and found[0]["status"] == "delivered":
        break
    time.sleep(0.1)
out["delivery"] = client.webhooks.get_delivery(made["id"], found[0]["id"])["status"]
out["replayed_from"] = client.webhooks.replay_delivery(made["id"], found[0]["id"])["replayed_from_delivery_id"]
out["delivery_id"] = found[0]["id"]
out["rotated"] = client.webhooks.rotate_secret(made["id"])["secret"].startswith("whsec_")
print(json.dumps(out))
"""


def test_the_official_sdk_drives_webhooks_and_verifies_them(api: ApiEnv) -> None:
    import subprocess
    from pathlib import Path

    from tests.integration.conftest import require
    from tests.integration.live_app import live_server

    sdk_python = Path(__file__).resolve().parents[2] / ".venv-sdk" / "bin" / "python"
    require(sdk_python.exists(), f"{sdk_python} is missing: run scripts/setup")
    with Receiver() as receiver, live_server(api) as base:
        done = subprocess.run(
            [str(sdk_python), "-I", "-c", SDK_SCRIPT, base, api.key, receiver.url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["listed"] == [out["id"]] and out["got"] == "sdk" and out["updated"] is None
        assert out["delivery"] == "delivered" and out["replayed_from"] == out["delivery_id"] and out["rotated"]
        first, again = receiver.wait_for(2)
        assert first.headers["webhook-id"] == again.headers["webhook-id"]
        # The SDK's own verify_webhook accepts what the server sent.
        check = (
            "import sys, json\nfrom shipmail import verify_webhook\n"
            "h = json.loads(sys.argv[1]); print(verify_webhook(sys.argv[2], h, sys.argv[3])['type'])"
        )
        verified = subprocess.run(
            [str(sdk_python), "-I", "-c", check, json.dumps(first.headers), first.body.decode(), out["secret"]],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert verified.returncode == 0 and verified.stdout.strip() == "webhook.test", verified.stderr


def _age(api: ApiEnv, model: Any, row_id: str, **moved: timedelta) -> None:
    """Move timestamps of one row back in time (``field=how_long_ago_from_now``): 3 or 30 days pass
    for the code under test without the test sleeping."""
    import sqlalchemy as sa
    from sqlmodel import Session

    from shipmail import utc

    engine = sa.create_engine(api.settings.database_url)
    with Session(engine) as session:
        row = session.get(model, row_id)
        assert row is not None
        for name, ago in moved.items():
            setattr(row, name, utc.now() - ago)
        session.add(row)
        session.commit()
    engine.dispose()


def test_a_webhook_failing_for_3_days_is_disabled_until_update_enables_it(api: ApiEnv) -> None:
    """Every attempt has failed since 3 days ago (``failing_since`` moved back): the next failed
    attempt disables the webhook and fails its delivery; ``updateWebhook`` with ``active: true``
    enables it again, and the next event is delivered."""
    from shipmail.webhooks.models import Webhook

    mbx = api.new_mailbox("hooks-disable.example", "hello")
    with Receiver(answers=[500]) as receiver:
        hook = create(api, receiver.url, ["message.received"])
        _age(api, Webhook, hook["id"], failing_since=timedelta(days=3, minutes=1))
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), "disable")
        assert api.lmtp(mbx["address"], raw) == {}
        (first,) = receiver.wait_for(1)
        (delivery,) = settled(api, hook["id"], 1)
        assert delivery["status"] == "failed" and delivery["attempts"] == 1
        shown = api.client.get(f"/v1/webhooks/{hook['id']}", headers=api.auth()).json()
        assert shown["active"] is False
        # Disabled: a new event makes no delivery to it.
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), "while-disabled")
        assert api.lmtp(mbx["address"], raw) == {}
        api.recorded()
        assert len(deliveries(api, hook["id"])) == 1
        r = api.client.patch(f"/v1/webhooks/{hook['id']}", json={"active": True}, headers=api.auth())
        assert r.status_code == 200 and r.json()["active"] is True, r.text
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), "enabled-again")
        assert api.lmtp(mbx["address"], raw) == {}
        got = receiver.wait_for(2)
        assert got[-1].headers["webhook-id"] != first.headers["webhook-id"]
        assert verify(hook["secret"], got[-1])
        assert sorted(d["status"] for d in settled(api, hook["id"], 2)) == ["delivered", "failed"]


def test_a_delivery_of_the_last_30_days_replays_an_older_one_does_not(api: ApiEnv) -> None:
    from shipmail.webhooks.models import WebhookDelivery

    mbx = api.new_mailbox("hooks-replay-window.example", "hello")
    with Receiver() as receiver:
        hook = create(api, receiver.url, ["message.received"])
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), "window")
        assert api.lmtp(mbx["address"], raw) == {}
        (original,) = receiver.wait_for(1)
        (delivery,) = settled(api, hook["id"], 1)
        replay = f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/replay"
        _age(api, WebhookDelivery, delivery["id"], created_at=timedelta(days=29, hours=23))
        r = api.client.post(replay, headers=api.auth())
        assert r.status_code == 201, r.text
        again = receiver.wait_for(2)[-1]
        assert again.headers["webhook-id"] == original.headers["webhook-id"]
        _age(api, WebhookDelivery, delivery["id"], created_at=timedelta(days=30, minutes=1))
        r = api.client.post(replay, headers=api.auth())
        assert r.status_code == 409, r.text
        assert r.json()["error"]["type"] == "conflict"
        assert len(deliveries(api, hook["id"])) == 2  # the refused replay made no delivery
