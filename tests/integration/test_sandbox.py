"""Sandbox inbound on the real Cyrus: ``POST /v1/mailboxes/{id}/sandbox/inbound`` builds an RFC 5322
message, delivers it over LMTP (through the mailbox's Sieve script) and answers 201 with the
stored message; threading headers thread it; header injection and unsafe headers are refused."""

from __future__ import annotations

import email
import json
import secrets
import subprocess
import time
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipmail.mailserver.cyrus_server import CyrusMailServer
from tests.integration.conftest import ApiEnv, free_port, require
from tests.integration.corpus import ids_by_message_id, jmap
from tests.integration.live_app import live_server

REPO = Path(__file__).resolve().parents[2]
SDK_PYTHON = REPO / ".venv-sdk" / "bin" / "python"


def new_mailbox(api: ApiEnv, domain: str, local: str | None = None, key: str | None = None) -> dict[str, Any]:
    return api.new_mailbox(domain, local or f"m{secrets.token_hex(4)}", key)


def inject(api: ApiEnv, mailbox_id: str, body: dict[str, Any], key: str | None = None) -> Any:
    return api.client.post(f"/v1/mailboxes/{mailbox_id}/sandbox/inbound", json=body, headers=api.auth(key))


def delivered(api: ApiEnv, mbx: dict[str, Any], r: Any) -> dict[str, Any]:
    """The stored copy (the inbox's full message) of the ``Message`` a sandbox inject answered,
    after checking that answer's shape (the reference's required keys)."""
    m = r.json()
    assert m["object"] == "message" and m["id"].startswith("msg_"), m
    assert m["source"] == "inbound" and m["status"] == "delivered" and m["mode"] == "live"
    assert m["mailbox_id"] == mbx["id"] and m["thread_id"].startswith("thr_")
    for k in ("source_rfc_message_id", "delivered_rfc_message_id", "client_reference", "metadata", "headers"):
        assert k in m
    for k in ("subject", "from_address", "to_addresses", "cc_addresses", "bcc_addresses", "attachments"):
        assert k in m
    for k in ("rule_disposition", "scheduled_at", "created_at", "updated_at"):
        assert k in m
    got = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/messages/{m['email_id']}", headers=api.auth())
    assert got.status_code == 200, got.text
    again = api.client.get(f"/v1/messages/{m['id']}", headers=api.auth())
    assert again.status_code == 200 and again.json() == m
    full: dict[str, Any] = got.json()
    assert full["thread_id"] == m["thread_id"] and full["subject"] == m["subject"]
    assert m["source_rfc_message_id"] == f"<{full['message_id'][0]}>"
    return full


def raw_message(api: ApiEnv, address: str, email_id: str) -> email.message.EmailMessage:
    responses = jmap(api, address, [["Email/get", {"ids": [email_id], "properties": ["blobId"]}, "g"]])
    blob_id = responses[0][1]["list"][0]["blobId"]
    access = api.cyrus.server.jmap_access(address)
    base = access.session_url.rsplit("/jmap/", 1)[0]
    r = httpx.get(f"{base}/jmap/download/{address}/{blob_id}/m.eml", headers={"Authorization": access.authorization})
    assert r.status_code == 200
    parsed = email.message_from_bytes(r.content, policy=policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def count(api: ApiEnv, address: str) -> int:
    return len(ids_by_message_id(api, address))


def test_inject_answers_201_with_the_delivered_message(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "sandbox-shape.example")
    body = {
        "from": {"address": "alice@sender.example", "name": "Alice Ünïcode"},
        "to": ["Bob Builder <bob@sandbox-shape.example>", {"address": "carol@elsewhere.example"}],
        "cc": ["dave@elsewhere.example"],
        "subject": "Grüße from the sandbox — " + "long " * 30,
        "text": "Hello in plain text.\nSecond line.\n",
        "html": "<p>Hello in <b>HTML</b>.</p>",
        "received_at": "2026-11-01T10:11:12+02:00",
        "headers": [
            {"name": "X-Campaign", "value": "autumn-ärger"},
            {"name": "List-Unsubscribe", "value": "<https://sender.example/u/1>, <mailto:u@sender.example>"},
            {"name": "List-Unsubscribe-Post", "value": "List-Unsubscribe=One-Click"},
        ],
    }
    r = inject(api, mbx["id"], body)
    assert r.status_code == 201, r.text
    msg = r.json()
    assert msg["from_address"] == "alice@sender.example" and msg["subject"] == body["subject"]
    assert msg["to_addresses"] == [
        {"address": "bob@sandbox-shape.example", "name": "Bob Builder"},
        {"address": "carol@elsewhere.example", "name": None},
    ]
    assert msg["cc_addresses"] == [{"address": "dave@elsewhere.example", "name": None}]
    assert {h["name"] for h in msg["headers"]} == {"X-Campaign", "List-Unsubscribe", "List-Unsubscribe-Post"}
    m = delivered(api, mbx, r)
    assert m["object"] == "inbox_message_full"
    assert m["id"].startswith("eml_") and m["thread_id"].startswith("thr_")
    assert m["mailbox_id"] == mbx["id"] and m["address"] == mbx["address"]
    assert m["from"] == [{"name": "Alice Ünïcode", "email": "alice@sender.example"}]
    assert m["to"] == [
        {"name": "Bob Builder", "email": "bob@sandbox-shape.example"},
        {"name": None, "email": "carol@elsewhere.example"},
    ]
    assert m["cc"] == [{"name": None, "email": "dave@elsewhere.example"}]
    assert m["subject"] == body["subject"]
    sent = datetime.fromisoformat(m["sent_at"].replace("Z", "+00:00"))
    assert sent == datetime(2026, 11, 1, 8, 11, 12, tzinfo=UTC)  # the Date header
    assert len(m["message_id"]) == 1 and m["message_id"][0].startswith("sandbox.")
    assert m["message_id"][0].endswith("@sandbox-shape.example")
    assert [p["type"] for p in m["text_body"]] == ["text/plain"]
    assert [p["type"] for p in m["html_body"]] == ["text/html"]
    values = {v["value"] for v in m["body_values"].values()}
    assert any("Hello in plain text." in v for v in values)
    headers = {h["name"].lower(): h["value"] for h in m["headers"]}
    assert "x-campaign" in headers and "list-unsubscribe-post" in headers
    assert m["has_attachment"] is False and m["attachments"] == []
    assert "inbox" in json.dumps(m["folder_ids"]) or m["folder_ids"]

    # The stored message is a proper RFC 5322 / MIME message.
    stored = raw_message(api, mbx["address"], m["id"].removeprefix("eml_"))
    assert stored.get_content_type() == "multipart/alternative"
    assert stored["X-Campaign"] == "autumn-ärger"
    assert str(stored["Subject"]) == body["subject"]
    assert stored["From"].addresses[0].display_name == "Alice Ünïcode"
    plain = stored.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert plain.replace("\r\n", "\n") == "Hello in plain text.\nSecond line.\n"


def test_single_bodies_and_defaults(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "sandbox-single.example")
    r = inject(api, mbx["id"], {"from": "Plain Sender <plain@sender.example>", "subject": "text only", "text": "hi"})
    assert r.status_code == 201, r.text
    m = delivered(api, mbx, r)
    assert m["to"] == [{"name": None, "email": mbx["address"]}]  # To defaults to the mailbox
    assert [p["type"] for p in m["text_body"]] == ["text/plain"]
    stored = raw_message(api, mbx["address"], m["id"].removeprefix("eml_"))
    assert stored.get_content_type() == "text/plain" and stored["Date"] is not None

    r = inject(api, mbx["id"], {"from": "h@sender.example", "subject": "html only", "html": "<h1>hi</h1>"})
    assert r.status_code == 201, r.text
    stored = raw_message(api, mbx["address"], r.json()["email_id"].removeprefix("eml_"))
    assert stored.get_content_type() == "text/html"


def test_in_reply_to_and_references_thread_messages(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "sandbox-thread.example")
    first = inject(
        api,
        mbx["id"],
        {
            "from": "a@sender.example",
            "subject": "Project kickoff",
            "text": "one",
            "message_id": "<kickoff-1@sender.example>",
        },
    )
    assert first.status_code == 201, first.text
    assert delivered(api, mbx, first)["message_id"] == ["kickoff-1@sender.example"]
    reply = inject(
        api,
        mbx["id"],
        {
            "from": "b@sender.example",
            "subject": "Re: Project kickoff",
            "text": "two",
            "in_reply_to": "<kickoff-1@sender.example>",
        },
    )
    assert reply.status_code == 201, reply.text
    third = inject(
        api,
        mbx["id"],
        {
            "from": "a@sender.example",
            "subject": "Re: Project kickoff",
            "text": "three",
            "references": ["<kickoff-1@sender.example>", reply.json()["source_rfc_message_id"]],
        },
    )
    assert third.status_code == 201, third.text
    other = inject(api, mbx["id"], {"from": "a@sender.example", "subject": "Unrelated", "text": "four"})
    assert other.status_code == 201, other.text

    thread = first.json()["thread_id"]
    assert reply.json()["thread_id"] == thread and third.json()["thread_id"] == thread
    assert other.json()["thread_id"] != thread
    stored_reply = delivered(api, mbx, reply)
    assert stored_reply["in_reply_to"] == ["kickoff-1@sender.example"]
    assert stored_reply["references"] == ["kickoff-1@sender.example"]  # defaults to in_reply_to

    # The same Message-ID again: Cyrus would drop it silently, so the API says 409.
    again = inject(
        api,
        mbx["id"],
        {"from": "a@sender.example", "subject": "dup", "text": "x", "message_id": "<kickoff-1@sender.example>"},
    )
    assert again.status_code == 409, again.text


@pytest.mark.parametrize(
    "body, field",
    [
        ({"subject": "Hi\r\nBcc: victim@example.org"}, "subject"),
        ({"subject": "Hi\nX-Evil: 1"}, "subject"),
        ({"subject": "Hi\x00there"}, "subject"),
        ({"from": {"address": "a@sender.example", "name": "Eve\r\nBcc: victim@example.org"}}, "from.name"),
        ({"from": "Eve <a@sender.example>\r\nBcc: victim@example.org"}, "from"),
        ({"to": ["ok@sender.example", "x@y.example\nBcc: victim@example.org"]}, "to[1]"),
        ({"headers": [{"name": "X-Test", "value": "a\r\nBcc: victim@example.org"}]}, "headers[0].value"),
        ({"headers": [{"name": "X-Test", "value": "a\x00b"}]}, "headers[0].value"),
        ({"headers": [{"name": "Bcc", "value": "victim@example.org"}]}, "headers[0].name"),
        ({"headers": [{"name": "Received", "value": "from evil"}]}, "headers[0].name"),
        ({"headers": [{"name": "X-Shipmail-Org", "value": "org_other"}]}, "headers[0].name"),
        ({"headers": [{"name": "X-SES-Configuration-Set", "value": "x"}]}, "headers[0].name"),
        ({"headers": [{"name": "X-Original-To", "value": "x@y.example"}]}, "headers[0].name"),
        ({"headers": [{"name": "X-Bad Name", "value": "x"}]}, "headers[0].name"),
        ({"headers": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}]}, "headers[1].name"),
        (
            {
                "headers": [
                    {"name": "List-Unsubscribe-Post", "value": "List-Unsubscribe=One-Click"},
                    {"name": "List-Unsubscribe", "value": "<mailto:u@sender.example>"},
                ]
            },
            "headers",
        ),
        ({"headers": [{"name": "List-Unsubscribe", "value": "https://no-brackets.example"}]}, "headers"),
        ({"message_id": "<a\x00b@sender.example>"}, "message_id"),
        ({"message_id": "<two words@sender.example>"}, "message_id"),
        ({"text": None, "html": None}, "text"),
        ({"from": "not an address"}, "from"),
        ({"from": {"address": "a@b@c.example"}}, "from.address"),
        ({"text": "nul \x00 in body"}, "text"),
    ],
)
def test_unsafe_input_is_refused_and_nothing_is_delivered(api: ApiEnv, body: dict[str, Any], field: str) -> None:
    mbx = new_mailbox(api, "sandbox-refuse.example", local=f"r{secrets.token_hex(4)}")
    payload = {"from": "a@sender.example", "subject": "hello", "text": "body", **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    r = inject(api, mbx["id"], payload)
    assert r.status_code == 422, r.text
    fields = [d["field"] for d in r.json()["error"]["details"]]
    assert any(f == field or f.startswith(field) for f in fields), fields
    assert count(api, mbx["address"]) == 0


def test_schema_level_refusals(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "sandbox-schema.example")
    for body in (
        {"subject": "no from", "text": "x"},
        {"from": "a@sender.example", "text": "no subject"},
        {"from": "a@sender.example", "subject": "x", "text": "x", "in_reply_to": "no-brackets@x"},
        {"from": "a@sender.example", "subject": "x", "text": "x", "references": ["<a@b>\r\n"]},
        {"from": "a@sender.example", "subject": "x", "text": "x", "bcc": ["x@y.example"]},
        {"from": "a@sender.example", "subject": "x", "text": "x", "headers": [{"name": "X-A", "value": ""}]},
    ):
        r = inject(api, mbx["id"], body)
        assert r.status_code == 422, (body, r.text)
    assert count(api, mbx["address"]) == 0


def test_tenancy_scope_and_unknown_mailbox(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "sandbox-tenant.example")
    body = {"from": "a@sender.example", "subject": "x", "text": "x"}
    other_org = api.new_key(org="globex")
    assert inject(api, mbx["id"], body, key=other_org).status_code == 404
    assert inject(api, "mbx_doesnotexist", body).status_code == 404
    read_only = api.new_key(scopes=["messages:read"])
    assert inject(api, mbx["id"], body, key=read_only).status_code == 403
    writer = api.new_key(scopes=["messages:write"])
    assert inject(api, mbx["id"], body, key=writer).status_code == 201
    assert count(api, mbx["address"]) == 1


def test_delivery_runs_the_mailbox_sieve_script(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sandbox mail takes the inbound path: a script that flags everything flags it."""
    from shipmail.delivery import service as sieve_sync

    mbx = new_mailbox(api, "sandbox-sieve.example")
    monkeypatch.setattr(sieve_sync, "build_script", lambda options: 'require ["imap4flags"];\naddflag "$viasieve";\n')
    services = api.client.app.state.services  # type: ignore[attr-defined]
    row = type("Row", (), {"id": mbx["id"], "address": mbx["address"]})()
    api.client.portal.call(sieve_sync.install, services, row)  # type: ignore[union-attr]
    r = inject(api, mbx["id"], {"from": "a@sender.example", "subject": "flag me", "text": "x"})
    assert r.status_code == 201, r.text
    responses = jmap(
        api,
        mbx["address"],
        [["Email/get", {"ids": [r.json()["email_id"].removeprefix("eml_")], "properties": ["keywords"]}, "g"]],
    )
    assert responses[0][1]["list"][0]["keywords"].get("$viasieve") is True


def test_mail_server_down_is_503(api: ApiEnv) -> None:
    from starlette.testclient import TestClient

    from shipmail.app import create_app

    mbx = new_mailbox(api, "sandbox-down.example")
    inst = api.cyrus.instance

    def dead(settings: Any) -> CyrusMailServer:
        return CyrusMailServer(
            host=inst.connect_host,
            imap_port=inst.imap_port,
            jmap_port=inst.jmap_port,
            admin_user=inst.admin_user,
            admin_password=inst.admin_password,
            jwt_secret=inst.jwt_secret,
            timeout=1.0,
            lmtp_port=free_port(),
        )

    with TestClient(create_app(api.settings, mail_server_factory=dead)) as client:
        started = time.monotonic()
        r = client.post(
            f"/v1/mailboxes/{mbx['id']}/sandbox/inbound",
            headers=api.auth(),
            json={"from": "a@sender.example", "subject": "x", "text": "x"},
        )
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] and time.monotonic() - started < 2


SDK_CODE = """
import json, sys
from shipmail import Shipmail
base, key, mailbox_id = sys.argv[1:4]
sm = Shipmail(key, base_url=base + "/v1", max_retries=0, timeout=15)
m = sm.mailboxes.inject_sandbox_inbound(mailbox_id, {
    "from_": {"address": "sdk@sender.example", "name": "SDK"}, "to": ["x@sdk-sandbox.example"],
    "subject": "from the SDK", "text": "sdk body", "message_id": "<sdk-1@sender.example>",
})
print(json.dumps(m))
"""


def test_official_sdk_inject(api: ApiEnv) -> None:
    require(SDK_PYTHON.exists(), "the official SDK is not installed (.venv-sdk): run scripts/setup")
    mbx = new_mailbox(api, "sdk-sandbox.example")
    with live_server(api) as base:
        done = subprocess.run(
            [str(SDK_PYTHON), "-I", "-c", SDK_CODE, base, api.key, mbx["id"]],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    m = json.loads(done.stdout)
    assert m["object"] == "message" and m["subject"] == "from the SDK" and m["source"] == "inbound"
    assert m["from_address"] == "sdk@sender.example"
    assert m["source_rfc_message_id"] == "<sdk-1@sender.example>"
