"""Attachment downloads on the real Cyrus: ``GET /v1/mailboxes/{id}/inbox/attachments`` streams the
exact bytes Python's email parser extracts from the corpus originals, with RFC 6266 names, ranges,
ETags, tenancy, and memory that stays flat for a large attachment."""

from __future__ import annotations

import email
import hashlib
import os
import secrets
import subprocess
import time
import tracemalloc
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from shipmail.mailserver.cyrus_server import CyrusMailServer
from tests.integration.conftest import ApiEnv, free_port, require
from tests.integration.corpus import corpus_bytes, ids_by_message_id, jmap, unique
from tests.integration.live_app import live_server

REPO = Path(__file__).resolve().parents[2]
SDK_PYTHON = REPO / ".venv-sdk" / "bin" / "python"

CORPUS_FILES = [
    "attachment_emails/attachment_pdf.eml",
    "attachment_emails/attachment_pdf_lf.eml",
    "attachment_emails/attachment_nonascii_filename.eml",
    "attachment_emails/attachment_only_email.eml",
    "attachment_emails/attachment_with_quoted_filename.eml",
    "attachment_emails/attachment_content_disposition.eml",
    "attachment_emails/attachment_with_encoded_name.eml",
]


def new_mailbox(api: ApiEnv, domain: str, local: str | None = None, key: str | None = None) -> dict[str, Any]:
    return api.new_mailbox(domain, local or f"m{secrets.token_hex(4)}", key)


def python_attachments(raw: bytes) -> dict[str, bytes]:
    """{filename: decoded bytes} as Python's email parser sees the message."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    out = {}
    for part in msg.walk():
        name = part.get_filename()
        if name and not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out[name] = payload
    return out


def deliver(api: ApiEnv, address: str, raw: bytes) -> list[dict[str, Any]]:
    """Deliver over LMTP; the JMAP attachments of the delivered message, each with the message's
    JMAP id as ``emailId``."""
    raw, mid = unique(raw)
    assert api.lmtp(address, raw) == {}
    email_id = ids_by_message_id(api, address)[mid]
    responses = jmap(api, address, [["Email/get", {"ids": [email_id], "properties": ["attachments"]}, "g"]])
    found: list[dict[str, Any]] = responses[0][1]["list"][0]["attachments"]
    return [{**a, "emailId": email_id} for a in found]


def url(
    mailbox_id: str, blob_id: str, name: str | None = None, *, part: dict[str, Any] | None = None, **extra: str
) -> str:
    """The download URL of ``blob_id``; with ``part`` (a JMAP attachment from :func:`deliver`)
    naming its message and part, as ``download_path`` does."""
    query = f"blob_id={quote(blob_id, safe='')}"
    if part is not None:
        query += f"&message_id=eml_{part['emailId']}&part_id={quote(part['partId'], safe='')}"
    if name is not None:
        query += f"&name={quote(name, safe='')}"
    for key, value in extra.items():
        query += f"&{key}={quote(value, safe='')}"
    return f"/v1/mailboxes/{mailbox_id}/inbox/attachments?{query}"


@pytest.fixture
def sample(api: ApiEnv) -> dict[str, Any]:
    """A mailbox holding attachment_nonascii_filename.eml ("ciële.txt", 11 bytes)."""
    mbx = new_mailbox(api, "files-sample.example")
    raw = corpus_bytes("attachment_emails/attachment_pdf.eml")
    (att,) = deliver(api, mbx["address"], raw)
    return {"mailbox": mbx, "blob_id": att["blobId"], "bytes": python_attachments(raw)["broken.pdf"], "att": att}


def test_bytes_match_the_python_parser_for_the_corpus(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "files-corpus.example")
    checked = 0
    for name in CORPUS_FILES:
        raw = corpus_bytes(name)
        expected = python_attachments(raw)
        for att in deliver(api, mbx["address"], raw):
            if att["name"] not in expected:
                continue
            r = api.client.get(url(mbx["id"], att["blobId"], part=att), headers=api.auth())
            assert r.status_code == 200, (name, r.text)
            assert r.content == expected[att["name"]], name
            assert r.headers["content-length"] == str(len(expected[att["name"]]))
            assert r.headers["content-type"].split(";")[0] == att["type"]
            assert r.headers["etag"] == f'"{att["blobId"]}"'
            assert r.headers["content-disposition"].startswith("attachment; filename=")
            assert r.headers["x-content-type-options"] == "nosniff"
            checked += 1
    assert checked >= 6


def test_non_ascii_names_follow_rfc_6266(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "files-names.example")
    (att,) = [
        a
        for a in deliver(api, mbx["address"], corpus_bytes("attachment_emails/attachment_nonascii_filename.eml"))
        if a["name"]
    ]
    assert att["name"] == "ciële.txt"
    r = api.client.get(url(mbx["id"], att["blobId"], part=att), headers=api.auth())  # the part's own name
    assert r.status_code == 200
    assert r.headers["content-disposition"] == "attachment; filename=\"ciele.txt\"; filename*=UTF-8''ci%C3%ABle.txt"
    assert r.headers["content-type"] == "text/plain; charset=us-ascii"

    r = api.client.get(url(mbx["id"], att["blobId"], 'Überweisung "März"/2026.txt'), headers=api.auth())
    assert r.status_code == 200
    assert r.headers["content-disposition"] == (
        'attachment; filename="Uberweisung _Marz__2026.txt"; '
        "filename*=UTF-8''%C3%9Cberweisung%20%22M%C3%A4rz%22_2026.txt"
    )
    r = api.client.get(url(mbx["id"], att["blobId"], "plain.txt"), headers=api.auth())
    assert r.headers["content-disposition"] == 'attachment; filename="plain.txt"'
    r = api.client.get(url(mbx["id"], att["blobId"], "日本語.txt"), headers=api.auth())
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"attachment\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt"
    ) or r.headers["content-disposition"].startswith('attachment; filename=".txt"')
    r = api.client.get(url(mbx["id"], att["blobId"], "bad\r\nX-Evil: 1"), headers=api.auth())
    assert r.status_code == 422


def test_ranges(api: ApiEnv, sample: dict[str, Any]) -> None:
    mbx, blob, data = sample["mailbox"], sample["blob_id"], sample["bytes"]
    size = len(data)

    def get(**h: str) -> Any:
        return api.client.get(url(mbx["id"], blob), headers={**api.auth(), **h})

    for header, first, last in (
        ("bytes=0-9", 0, 9),
        ("bytes=5-", 5, size - 1),
        ("bytes=-7", size - 7, size - 1),
        ("bytes=3-3", 3, 3),
        (f"bytes=100-{size + 500}", 100, size - 1),
        (f"bytes=-{size + 10}", 0, size - 1),
    ):
        r = get(Range=header)
        assert r.status_code == 206, header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert r.headers["content-length"] == str(last - first + 1)
        assert r.content == data[first : last + 1], header
    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
        r = get(Range=header)
        assert r.status_code == 416, header
        assert r.headers["content-range"] == f"bytes */{size}"
    for header in ("bytes=0-1,4-5", "bytes=abc", "items=0-5", "bytes=9-3"):
        r = get(Range=header)
        assert r.status_code == 200 and r.content == data, header
    etag = f'"{blob}"'
    assert get(Range="bytes=0-1", **{"If-Range": etag}).status_code == 206
    r = get(Range="bytes=0-1", **{"If-Range": '"other"'})
    assert r.status_code == 200 and r.content == data


def test_etag_and_if_none_match(api: ApiEnv, sample: dict[str, Any]) -> None:
    mbx, blob = sample["mailbox"], sample["blob_id"]
    first = api.client.get(url(mbx["id"], blob), headers=api.auth())
    etag = first.headers["etag"]
    assert etag == f'"{blob}"' and first.headers["accept-ranges"] == "bytes"
    for value in (etag, f"W/{etag}", f'"x", {etag}', "*"):
        r = api.client.get(url(mbx["id"], blob), headers={**api.auth(), "If-None-Match": value})
        assert r.status_code == 304, value
        assert r.content == b"" and r.headers["etag"] == etag
    r = api.client.get(url(mbx["id"], blob), headers={**api.auth(), "If-None-Match": '"something-else"'})
    assert r.status_code == 200 and r.content == sample["bytes"]


def test_head_gives_the_headers_without_a_body(api: ApiEnv, sample: dict[str, Any]) -> None:
    mbx, blob = sample["mailbox"], sample["blob_id"]
    r = api.client.head(url(mbx["id"], blob, part=sample["att"]), headers=api.auth())
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == str(len(sample["bytes"]))
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == 'attachment; filename="broken.pdf"'
    # The blob alone names no part: application/octet-stream, "attachment".
    r = api.client.head(url(mbx["id"], blob), headers=api.auth())
    assert r.status_code == 200 and r.headers["content-length"] == str(len(sample["bytes"]))
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == 'attachment; filename="attachment"'


def test_unknown_foreign_and_invalid_blobs(api: ApiEnv, sample: dict[str, Any]) -> None:
    mbx, blob = sample["mailbox"], sample["blob_id"]
    # Unknown blob, well-formed.
    r = api.client.get(url(mbx["id"], "G" + "0" * 40), headers=api.auth())
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    # A blob of another mailbox of the same organisation.
    other = new_mailbox(api, "files-other.example")
    (foreign,) = [
        a for a in deliver(api, other["address"], corpus_bytes("attachment_emails/attachment_only_email.eml"))
    ]
    assert api.client.get(url(other["id"], foreign["blobId"]), headers=api.auth()).status_code == 200
    assert api.client.get(url(mbx["id"], foreign["blobId"]), headers=api.auth()).status_code == 404
    # The message's text part and the whole message are blobs of the mailbox too.
    # Another organisation: 404 for the mailbox, whatever the blob.
    globex = api.new_key(org="globex")
    assert api.client.get(url(mbx["id"], blob), headers=api.auth(globex)).status_code == 404
    # Scope: messages:read is enough, mailboxes:read is not.
    assert (
        api.client.get(url(mbx["id"], blob), headers=api.auth(api.new_key(scopes=["messages:read"]))).status_code == 200
    )
    assert (
        api.client.get(url(mbx["id"], blob), headers=api.auth(api.new_key(scopes=["mailboxes:read"]))).status_code
        == 403
    )
    # Invalid input: 422, never 500.
    for bad in ("", "a b", "G..%00", "x" * 300, "<script>"):
        r = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/attachments?blob_id={quote(bad)}", headers=api.auth())
        assert r.status_code == 422, bad
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/attachments", headers=api.auth()).status_code == 422


def test_whole_message_blob_is_message_rfc822(api: ApiEnv, sample: dict[str, Any]) -> None:
    mbx = sample["mailbox"]
    ids = ids_by_message_id(api, mbx["address"])
    responses = jmap(api, mbx["address"], [["Email/get", {"ids": list(ids.values()), "properties": ["blobId"]}, "g"]])
    blob = responses[0][1]["list"][0]["blobId"]
    r = api.client.get(url(mbx["id"], blob, message_id=f"eml_{sample['att']['emailId']}"), headers=api.auth())
    assert r.status_code == 200
    assert r.headers["content-type"] == "message/rfc822"
    assert b"broken.pdf" in r.content


def test_download_path_of_the_inbox_message(api: ApiEnv, sample: dict[str, Any]) -> None:
    """The inbox API's attachments[].download_path leads here."""
    mbx = sample["mailbox"]
    (email_id,) = ids_by_message_id(api, mbx["address"]).values()
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/messages/eml_{email_id}", headers=api.auth())
    assert r.status_code == 200, r.text
    (att,) = r.json()["attachments"]
    r = api.client.get("/v1" + att["download_path"], headers=api.auth())
    assert r.status_code == 200 and r.content == sample["bytes"]


def test_mail_server_down_is_503_within_2_s(api: ApiEnv, sample: dict[str, Any]) -> None:
    from starlette.testclient import TestClient

    from shipmail.app import create_app

    inst = api.cyrus.instance

    def dead(settings: Any) -> CyrusMailServer:
        return CyrusMailServer(
            host=inst.connect_host,
            imap_port=inst.imap_port,
            jmap_port=free_port(),
            admin_user=inst.admin_user,
            admin_password=inst.admin_password,
            jwt_secret=inst.jwt_secret,
            timeout=2.0,
        )

    with TestClient(create_app(api.settings, mail_server_factory=dead)) as client:
        started = time.monotonic()
        r = client.get(url(sample["mailbox"]["id"], sample["blob_id"]), headers=api.auth())
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert time.monotonic() - started < 2


def big_message(size: int) -> tuple[bytes, bytes]:
    payload = os.urandom(size)
    msg = EmailMessage()
    msg["From"] = "big@sender.example"
    msg["To"] = "files@files-big.example"
    msg["Subject"] = "a big attachment"
    msg.set_content("see attached")
    msg.add_attachment(payload, maintype="application", subtype="octet-stream", filename="big.bin")
    return msg.as_bytes(policy=policy.SMTP), payload


def test_large_attachment_streams_with_flat_memory(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "files-big.example")
    raw, payload = big_message(6 * 1024 * 1024)
    (att,) = deliver(api, mbx["address"], raw)
    digest = hashlib.sha256(payload).hexdigest()
    del raw, payload
    with live_server(api) as base:
        target = base + url(mbx["id"], att["blobId"])
        with httpx.Client(timeout=30) as client:
            tracemalloc.start()
            try:
                tracemalloc.reset_peak()
                sha = hashlib.sha256()
                chunks = 0
                largest = 0
                with client.stream("GET", target, headers=api.auth()) as r:
                    assert r.status_code == 200
                    assert r.headers["content-length"] == str(6 * 1024 * 1024)
                    for chunk in r.iter_raw():
                        sha.update(chunk)
                        chunks += 1
                        largest = max(largest, len(chunk))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert sha.hexdigest() == digest
            assert chunks > 20 and largest <= 1024 * 1024
            # Server and client in this process: far below the 6 MiB a buffered copy would need.
            assert peak < 3 * 1024 * 1024, peak

            # A client that hangs up after the first chunk: the server closes the upstream and
            # keeps serving.
            with client.stream("GET", target, headers=api.auth()) as r:
                next(r.iter_raw())
            assert wait_until(lambda: upstream_connections_in_use(base.app) == 0)
            ranged = client.get(target, headers={**api.auth(), "Range": "bytes=5000000-5000009"})
            assert ranged.status_code == 206 and len(ranged.content) == 10
            status = client.get(base + "/v1/status")
            assert status.status_code == 200


def upstream_connections_in_use(app: Any) -> int:
    """How many of the app's JMAP HTTP connections are busy (a stream not closed keeps one)."""
    pool = app.state.services.jmap._http._transport._pool
    return sum(1 for conn in pool.connections if not conn.is_idle() and not conn.is_closed())


def wait_until(check: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


SDK_CODE = """
import hashlib, json, sys
from shipmail import Shipmail
base, key, mailbox_id, blob_id = sys.argv[1:5]
sm = Shipmail(key, base_url=base + "/v1", max_retries=0, timeout=15)
data = sm.mailboxes.download_inbox_attachment(mailbox_id, {"blob_id": blob_id, "name": "ciële.pdf"})
print(json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}))
"""


def test_official_sdk_download(api: ApiEnv, sample: dict[str, Any]) -> None:
    require(SDK_PYTHON.exists(), "the official SDK is not installed (.venv-sdk): run scripts/setup")
    with live_server(api) as base:
        done = subprocess.run(
            [str(SDK_PYTHON), "-I", "-c", SDK_CODE, base, api.key, sample["mailbox"]["id"], sample["blob_id"]],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f'{{"sha256": "{hashlib.sha256(sample["bytes"]).hexdigest()}", "size": {len(sample["bytes"])}}}'
    )
