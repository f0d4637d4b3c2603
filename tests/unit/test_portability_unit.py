"""Pure parts of export and import: presigned URLs, the export archive's path and mbox encoding,
the import readers (mbox as Python's mailbox module and Thunderbird write it, ZIP, gzip), folder
mapping, IMAP modified UTF-7, the source-password sealing and the streamed raw-body limit."""

from __future__ import annotations

import gzip
import io
import mailbox
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from shipmail.config import Settings
from shipmail.exports import archive
from shipmail.http import signed
from shipmail.imports import mapping, secrets
from shipmail.imports.imap import decode_utf7
from shipmail.imports.sources import crlf, message_id, problem_of, read_file, read_mbox
from tests.unit.conftest import auth, make_key

SECRET = b"k" * 32


def test_signed_urls_check_method_path_expiry_and_signature() -> None:
    url = signed.sign(SECRET, "GET", "/v1/mailboxes/m/exports/e/download", 2_000_000_000)
    path, _, query = url.partition("?")
    params = dict(p.split("=") for p in query.split("&"))
    expires, signature = int(params["expires"]), params["signature"]
    assert signed.verify(SECRET, "GET", path, expires, signature, now=1_900_000_000)
    assert not signed.verify(SECRET, "PUT", path, expires, signature, now=1_900_000_000)
    assert not signed.verify(SECRET, "GET", path + "x", expires, signature, now=1_900_000_000)
    assert not signed.verify(SECRET, "GET", path, expires + 1, signature, now=1_900_000_000)
    assert not signed.verify(b"other" * 8, "GET", path, expires, signature, now=1_900_000_000)
    assert not signed.verify(SECRET, "GET", path, expires, signature, now=2_000_000_001)
    assert not signed.verify(SECRET, "GET", path, expires, "é" * 64, now=1_900_000_000)
    assert not signed.verify(SECRET, "GET", path, expires, "\udc80" * 64, now=1_900_000_000)


@given(st.text(min_size=1, max_size=40))
def test_folder_segments_round_trip(name: str) -> None:
    seg = archive.segment(name)
    assert "/" not in seg and "\\" not in seg and seg not in (".", "..") and not seg.startswith(".")
    assert archive.unsegment(seg) == name


@given(st.binary(max_size=400), st.integers(min_value=1, max_value=17))
def test_mbox_quoting_round_trips_crlf_messages(body: bytes, chunk: int) -> None:
    """What the export writes into an mbox (fed in arbitrary chunks) reads back byte for byte."""
    raw = crlf(b"From: a@b.example\r\nSubject: x\r\n\r\n" + body.replace(b"\r", b"") + b"\r\nFrom me\r\n>From you\r\n")
    quoter = archive.MboxQuoter()
    data = archive.from_line(None)
    for i in range(0, len(raw), chunk):
        data += quoter.feed(raw[i : i + chunk])
    data += quoter.close()
    (message,) = list(read_mbox(io.BytesIO(data + data.replace(b"a@b", b"c@d")), ["X"]))[:1]
    assert message.raw == raw


def test_python_mailbox_module_mbox_reads_back_with_flags(tmp_path: Path) -> None:
    path = tmp_path / "Lists.mbox"
    box = mailbox.mbox(str(path))
    bodies = [b"From here on\nplain\n", b"line\n>From quoted\n", b"last\n"]
    for i, body in enumerate(bodies):
        msg = mailbox.mboxMessage(f"From: a@example.org\nMessage-ID: <m{i}@x>\nSubject: {i}\n\n".encode() + body)
        msg.set_flags("RF" if i == 1 else "O")
        box.add(msg)
    box.flush()
    box.close()
    messages = list(read_file(path, "Lists.mbox"))
    assert [m.folders for m in messages] == [[(["Lists"], None)]] * 3
    assert [message_id(m.raw or b"") for m in messages] == ["m0@x", "m1@x", "m2@x"]
    assert messages[0].raw is not None and messages[0].raw.endswith(b"\r\n\r\nFrom here on\r\nplain\r\n")
    assert messages[1].keywords == ["$flagged", "$seen"] and messages[0].keywords == []
    # Resuming at a position skips what came before.
    assert [m.position for m in read_file(path, "Lists.mbox", start=2)] == [2]


def test_thunderbird_mbox_flags_expunged_and_gzip(tmp_path: Path) -> None:
    data = (
        b"From - Tue Nov 03 09:15:00 2026\nX-Mozilla-Status: 0005\nSubject: a\nMessage-ID: <a@x>\n\nbody\n>From x\n\n"
        b"From - Tue Nov 03 09:16:00 2026\nX-Mozilla-Status: 0009\nSubject: b\n\ngone\n\n"
        b"From - Tue Nov 03 09:17:00 2026\nX-Mozilla-Status: 1002\nSubject: c\n\nFrom inside a paragraph\n"
    )
    path = tmp_path / "Sent.gz"
    path.write_bytes(gzip.compress(data))
    a, b, c = read_file(path, "Sent.mbox.gz")
    assert a.folders == [(["Sent"], None)] and a.keywords == ["$flagged", "$seen"]
    assert a.raw is not None and a.raw.endswith(b"\r\n\r\nbody\r\nFrom x\r\n")
    assert a.received_at is not None and a.received_at.isoformat() == "2026-11-03T09:15:00+00:00"
    assert b.raw is None and b.problem is not None and "expunged" in b.problem
    assert c.keywords == ["$answered", "$forwarded"]


def test_plain_zip_of_eml_and_mbox_files(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Work/Clients/1.eml", b"Subject: one\n\nx\n")
        zf.writestr("top.eml", b"Subject: two\n\ny\n")
        zf.writestr("bad.eml", b"not a message\n")
        zf.writestr("Old.mbox", b"From x Thu Jan  1 00:00:00 2026\nSubject: three\n\nz\n")
    path = tmp_path / "mail.zip"
    path.write_bytes(buf.getvalue())
    messages = list(read_file(path, "mail.zip"))
    assert [m.folders[0][0] for m in messages] == [["Old"], ["Work", "Clients"], ["Inbox"], ["Inbox"]]
    assert [m.problem is None for m in messages] == [True, True, False, True]


def test_problems_of_messages() -> None:
    assert problem_of(b"") == "empty message"
    assert problem_of(b"no header here\r\n") is not None
    assert problem_of(b"Subject: x\r\n\r\n") is None
    assert crlf(b"a\nb\r\nc\n") == b"a\r\nb\r\nc\r\n"
    assert message_id(b"Message-ID:\r\n <x@y>\r\n\r\n") == "x@y"


@pytest.mark.parametrize(
    ("path", "role", "expected"),
    [
        (["Sent Items"], None, ("sent", [])),
        (["[Gmail]", "Sent Mail"], None, ("sent", [])),
        (["Deleted Items"], None, ("trash", [])),
        (["INBOX", "Sent"], None, ("sent", [])),
        (["INBOX", "Receipts"], None, ("inbox", ["Receipts"])),
        (["Junk E-mail"], None, ("junk", [])),
        (["Archive", "2020"], None, ("archive", ["2020"])),
        (["Projects", "A/B"], None, (None, ["Projects", "A_B"])),
        (["Whatever"], "drafts", ("drafts", [])),
    ],
)
def test_folder_mapping(path: list[str], role: str | None, expected: tuple[str | None, list[str]]) -> None:
    assert mapping.target(path, role) == expected


def test_modified_utf7_names() -> None:
    assert decode_utf7(b"Entw&APw-rfe") == "Entwürfe"
    assert decode_utf7(b"A&-B") == "A&B"
    assert decode_utf7(b"&ZeVnLIqe-") == "日本語"


def test_source_password_is_sealed() -> None:
    token = secrets.seal(SECRET, "hunter2 pässword")
    assert "hunter2" not in token
    assert secrets.unseal(SECRET, token) == "hunter2 pässword"
    assert secrets.unseal(b"x" * 32, token) is None


@pytest.mark.usefixtures("db_backend")
def test_upload_body_is_streamed_under_its_own_limit(
    client: TestClient, settings: Settings, key: str, mbx: dict[str, Any]
) -> None:
    """The presigned PUT takes more than SHIPMAIL_MAX_BODY_BYTES (its limit is the declared size),
    refuses a Content-Length above the declared size before reading, and the JSON operations keep
    their limit."""
    size = settings.max_body_bytes + 1000
    staged = client.post(
        f"/v1/mailboxes/{mbx['id']}/imports/files",
        json={"file_name": "big.mbox", "size_bytes": size},
        headers=auth(key),
    )
    assert staged.status_code == 201, staged.text
    url = staged.json()["upload_url"]
    too_big = client.put(url, content=b"x" * 10, headers={"Content-Length": str(size + 1)})
    assert too_big.status_code == 413
    ok = client.put(url, content=b"From x Thu Jan  1 00:00:00 2026\n" + b"y" * (size - 32))
    assert ok.status_code == 200, ok.text
    assert ok.json()["size_bytes"] == size
    assert client.put(url, content=b"again").status_code == 409
    huge = b'{"file_name": "' + b"a" * settings.max_body_bytes + b'", "size_bytes": 1}'
    r = client.post(f"/v1/mailboxes/{mbx['id']}/imports/files", content=huge, headers=auth(key))
    assert r.status_code == 413
    # Without a valid signature: 404; another mailbox's path with this signature: 404.
    assert client.put(url.replace("signature=", "signature=f"), content=b"x").status_code in (404, 422)
    assert client.put(url.replace(mbx["id"], "mbx_other"), content=b"x").status_code == 404


@pytest.mark.usefixtures("db_backend")
def test_export_scope_is_its_own(client: TestClient, settings: Settings, mbx: dict[str, Any]) -> None:
    writer = make_key(settings, scopes=["mailboxes:write"])
    exporter = make_key(settings, scopes=["mailboxes:export"])
    assert client.post(f"/v1/mailboxes/{mbx['id']}/exports", headers=auth(writer)).status_code == 403
    r = client.get(f"/v1/mailboxes/{mbx['id']}/exports/mbexp_{'0' * 24}", headers=auth(exporter))
    assert r.status_code == 404
