"""Export and import end to end on the real Cyrus (issue 14, sections 4 and 5): a mailbox holding
every deliverable message of the corpus over nested folders is exported to a ZIP and imported
into a fresh mailbox (same folders, bytes, keywords, received dates); mbox files written by
Python's ``mailbox`` module and in Thunderbird's format are imported; undo leaves the mailbox as
it was; an IMAP source (a second mailbox of our own Cyrus) is pulled, resuming after a failure."""

from __future__ import annotations

import hashlib
import io
import json
import mailbox
import smtplib
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipmail.exports import service as export_service
from shipmail.http.errors import ServiceUnavailable
from shipmail.imports import service as import_service
from tests.integration.conftest import ApiEnv
from tests.integration.corpus import CORPUS, corpus_bytes, jmap, unique

SYSTEM = {"inbox", "archive", "drafts", "sent", "junk", "trash"}


# --------------------------------------------------------------------------- helpers


def new_mailbox(api: ApiEnv, local: str = "port") -> dict[str, Any]:
    dom = api.verified_domain(f"p{uuid.uuid4().hex[:10]}.example")
    body = {"domain_id": dom["id"], "address": local, "password": "CorrectHorse9"}
    r = api.client.post("/v1/mailboxes", json=body, headers=api.auth())
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def folders(api: ApiEnv, address: str) -> dict[str, dict[str, Any]]:
    """{JMAP id: Mailbox} of the account."""
    listed = jmap(api, address, [["Mailbox/get", {"properties": ["id", "name", "parentId", "role"]}, "m"]])
    return {m["id"]: m for m in listed[0][1]["list"]}


def path_of(boxes: dict[str, dict[str, Any]], box_id: str) -> str:
    names: list[str] = []
    current: str | None = box_id
    while current is not None:
        names.append(boxes[current]["name"])
        current = boxes[current].get("parentId")
    return "/".join(reversed(names))


def create_folder(api: ApiEnv, mbx: dict[str, Any], name: str, parent: str | None = None) -> str:
    body: dict[str, Any] = {"name": name}
    if parent is not None:
        body["parent_id"] = parent
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/folders", json=body, headers=api.auth())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def emails(api: ApiEnv, address: str) -> list[dict[str, Any]]:
    props = ["id", "blobId", "mailboxIds", "keywords", "receivedAt", "size", "messageId"]
    out: list[dict[str, Any]] = []
    position = 0
    while True:
        responses = jmap(
            api,
            address,
            [
                ["Email/query", {"sort": [{"property": "id"}], "position": position, "limit": 500}, "q"],
                [
                    "Email/get",
                    {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}, "properties": props},
                    "g",
                ],
            ],
        )
        ids = responses[0][1]["ids"]
        out.extend(responses[1][1]["list"])
        position += len(ids)
        if len(ids) < 500:
            return out


def blob(api: ApiEnv, address: str, blob_id: str) -> bytes:
    access = api.cyrus.server.jmap_access(address)
    url = access.session_url.rsplit("/jmap/", 1)[0] + f"/jmap/download/{address}/{blob_id}/m.eml?accept=message/rfc822"
    r = httpx.get(url, headers={"Authorization": access.authorization}, timeout=30)
    assert r.status_code == 200, r.status_code
    return r.content


def snapshot(api: ApiEnv, address: str) -> tuple[set[str], set[tuple[str, frozenset[str], frozenset[str], str]]]:
    """(folder paths, {(email id, folder paths, keywords, receivedAt)}): what undo must restore."""
    boxes = folders(api, address)
    mails = {
        (
            e["id"],
            frozenset(path_of(boxes, b) for b in e["mailboxIds"]),
            frozenset(k for k in e["keywords"] if not k.startswith("$has")),
            e["receivedAt"],
        )
        for e in emails(api, address)
    }
    return {path_of(boxes, b) for b in boxes}, mails


def wait(api: ApiEnv, url: str, done: set[str], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = api.client.get(url, headers=api.auth())
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] in done:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def upload(api: ApiEnv, mbx: dict[str, Any], name: str, data: bytes) -> str:
    r = api.client.post(
        f"/v1/mailboxes/{mbx['id']}/imports/files",
        json={"file_name": name, "size_bytes": len(data)},
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    staged = r.json()
    assert staged["object"] == "import_upload" and staged["file_id"].startswith("impf_")
    put = api.client.put(staged["upload_url"], content=data, headers={"Content-Type": "application/octet-stream"})
    assert put.status_code == 200, put.text
    assert put.json()["size_bytes"] == len(data)
    return str(staged["file_id"])


def run_import(api: ApiEnv, mbx: dict[str, Any], file_ids: list[str], **options: Any) -> dict[str, Any]:
    body = {"source": {"type": "files", "provider": "file", "file_ids": file_ids}, "options": options}
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/imports", json=body, headers=api.auth())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["object"] == "import" and created["status"] in ("queued", "running")
    return wait(api, f"/v1/mailboxes/{mbx['id']}/imports/{created['id']}", {"completed", "failed", "cancelled"})


def undo(api: ApiEnv, mbx: dict[str, Any], import_id: str) -> dict[str, Any]:
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/imports/{import_id}/undo", headers=api.auth())
    assert r.status_code == 200, r.text
    return wait(api, f"/v1/mailboxes/{mbx['id']}/imports/{import_id}", {"undone", "undo_failed"})


def export(api: ApiEnv, mbx: dict[str, Any]) -> dict[str, Any]:
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/exports", headers=api.auth())
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["id"].startswith("mbexp_") and started["status"] in ("pending", "processing")
    return wait(api, f"/v1/mailboxes/{mbx['id']}/exports/{started['id']}", {"completed", "failed"})


def corpus_messages() -> Iterator[tuple[str, bytes]]:
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "LICENSE"):
        yield str(path.relative_to(CORPUS)), corpus_bytes(str(path.relative_to(CORPUS)))


def fill_from_corpus(api: ApiEnv, mbx: dict[str, Any]) -> dict[str, str]:
    """Deliver every corpus message LMTP accepts (each with a fresh Message-ID) and spread them
    over nested folders and system folders with keywords; {Message-ID: corpus name}."""
    address = mbx["address"]
    projects = create_folder(api, mbx, "Projects")
    year = create_folder(api, mbx, "2026", projects)
    deep = create_folder(api, mbx, "Q4 (Übersicht)", year)
    lists = create_folder(api, mbx, "Lists")
    boxes = folders(api, address)
    roles = {m["role"]: m["id"] for m in boxes.values() if m.get("role")}
    targets = [
        roles["inbox"],
        projects[4:],
        year[4:],
        deep[4:],
        lists[4:],
        roles["archive"],
        roles["sent"],
        roles["trash"],
    ]
    delivered: dict[str, str] = {}
    for name, raw in corpus_messages():
        if not raw.strip():
            continue
        fresh, mid = unique(raw, "exp")
        try:
            assert api.lmtp(address, fresh) == {}
        except smtplib.SMTPDataError:
            continue  # LMTP refuses a few corpus files (invalid header): not in the mailbox
        delivered[mid] = name
    keyword_sets = [{"$seen": True}, {"$seen": True, "$flagged": True}, {}, {"$answered": True, "custom_tag": True}]
    update: dict[str, Any] = {}
    for i, e in enumerate(sorted(emails(api, address), key=lambda e: e["id"])):
        box = targets[i % len(targets)]
        boxes_of = {box: True}
        if i == 3:
            boxes_of[lists[4:]] = True  # one message in two folders
        update[e["id"]] = {"mailboxIds": boxes_of, "keywords": keyword_sets[i % len(keyword_sets)]}
    answer = jmap(api, address, [["Email/set", {"update": update}, "u"]])
    assert not answer[0][1].get("notUpdated"), answer
    return delivered


# --------------------------------------------------------------------------- tests


def test_export_then_import_round_trips_the_corpus(api: ApiEnv) -> None:
    source = new_mailbox(api, "source")
    delivered = fill_from_corpus(api, source)
    assert len(delivered) >= 90
    before = emails(api, source["address"])

    done = export(api, source)
    assert done["status"] == "completed", done
    file_count = sum(len(e["mailboxIds"]) for e in before)
    assert done["message_count"] == file_count == done["messages_done"] == done["messages_total"]
    assert done["folder_count"] == 10 and done["error_code"] is None
    url = done["download_url"]
    assert url and done["download_url_expires_at"] and done["expires_at"]

    # The private URL works without a key, with Range; a changed signature does not.
    full = api.client.get(url)
    assert full.status_code == 200 and full.headers["content-type"] == "application/zip"
    assert len(full.content) == done["file_size"]
    part = api.client.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == full.content[10:100]
    assert api.client.get(url[:-4] + "0000").status_code == 404

    zf = zipfile.ZipFile(io.BytesIO(full.content))
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == "shipmail.mailbox-export" and manifest["format_version"] == 1
    paths = {"/".join(f["path"]) for f in manifest["folders"]}
    assert {"Projects/2026/Q4 (Übersicht)", "Lists", "Inbox", "Trash"} <= paths
    assert "mail/Projects/2026/Q4 (Übersicht)/000001.eml" in zf.namelist()
    # The mbox of each folder holds the same messages (Python's mailbox module reads it).
    for folder in manifest["folders"]:
        if folder["messages"]:
            with tempfile.NamedTemporaryFile() as fh:
                fh.write(zf.read(folder["mbox"]))
                fh.flush()
                assert len(mailbox.mbox(fh.name)) == folder["messages"]
    # Every .eml is the message's exact bytes.
    by_id = {e["id"]: e for e in before}
    for entry in manifest["messages"][:15]:
        assert zf.read(entry["file"]) == blob(api, source["address"], by_id[entry["email_id"]]["blobId"])

    # Import into a fresh mailbox: same folders, bytes, keywords and dates.
    target = new_mailbox(api, "target")
    file_id = upload(api, target, "export.zip", full.content)
    result = run_import(api, target, [file_id], include_spam=True, include_trash=True)
    assert result["status"] == "completed", result
    assert result["counts"]["imported"] == len(before)
    assert result["counts"]["failed"] == 0 and result["counts"]["duplicates_skipped"] == 0
    assert not import_service.file_path(api.settings, file_id).exists()  # the upload is deleted

    src_boxes, dst_boxes = folders(api, source["address"]), folders(api, target["address"])
    assert {path_of(src_boxes, b) for b in src_boxes} == {path_of(dst_boxes, b) for b in dst_boxes}

    def described(address: str, boxes: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
        out = {}
        for e in emails(api, address):
            raw = blob(api, address, e["blobId"])
            out[hashlib.sha256(raw).hexdigest()] = (
                frozenset(path_of(boxes, b) for b in e["mailboxIds"]),
                frozenset(k for k in e["keywords"] if not k.startswith("$has")),
                e["receivedAt"],
                e["size"],
            )
        return out

    assert described(target["address"], dst_boxes) == described(source["address"], src_boxes)

    # The same ZIP again: everything is a duplicate, nothing is added.
    again = run_import(
        api, target, [upload(api, target, "export.zip", full.content)], include_spam=True, include_trash=True
    )
    assert again["counts"]["imported"] == 0
    assert again["counts"]["duplicates_skipped"] == len(before)

    # Undo of the first import: the fresh mailbox is as it was (system folders, no mail).
    undone = undo(api, target, result["id"])
    assert undone["status"] == "undone" and undone["counts"]["undone"] == len(before)
    paths_after, mails_after = snapshot(api, target["address"])
    assert mails_after == set()
    assert paths_after == {"Inbox", "Archive", "Drafts", "Sent", "Junk", "Trash"}


def python_mbox(messages: list[tuple[bytes, str]]) -> bytes:
    """An mbox written by Python's ``mailbox`` module (flags in Status/X-Status)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "python.mbox"
        box = mailbox.mbox(str(path))
        for raw, flags in messages:
            msg = mailbox.mboxMessage(raw)
            msg.set_flags(flags)
            box.add(msg)
        box.flush()
        box.close()
        return path.read_bytes()


def thunderbird_mbox(messages: list[tuple[bytes, int]]) -> bytes:
    """Thunderbird's format: ``From - <date>`` lines, X-Mozilla-Status, ``>From`` quoting, LF."""
    out = b""
    for raw, status in messages:
        text = raw.replace(b"\r\n", b"\n")
        head, _, body = text.partition(b"\n\n")
        quoted = b"\n".join(b">" + line if line.startswith(b"From ") else line for line in body.split(b"\n"))
        out += b"From - Tue Nov 03 09:15:00 2026\n"
        out += f"X-Mozilla-Status: {status:04x}\nX-Mozilla-Status2: 00000000\n".encode()
        out += head + b"\n\n" + quoted
        if not out.endswith(b"\n"):
            out += b"\n"
        out += b"\n"
    return out


def test_mbox_imports_python_and_thunderbird_then_undo(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "mboxes")
    # Mail that was there before the import, one of them identical to an imported one.
    existing, existing_mid = unique(corpus_bytes("plain_emails/basic_email.eml"), "old")
    assert api.lmtp(mbx["address"], existing) == {}
    before = snapshot(api, mbx["address"])

    corpus = [raw for _, raw in corpus_messages() if raw.strip()][:40]
    py_msgs = [(unique(raw, "py")[0], "RO" if i % 2 else "RA") for i, raw in enumerate(corpus[:20])]
    tb_msgs = [(unique(raw, "tb")[0], 0x0001 if i % 3 else 0x0005) for i, raw in enumerate(corpus[20:])]
    quoted_mid = f"quoted.{uuid.uuid4().hex}@example.org"
    quoted = (
        f"From: a@example.org\nTo: b@example.org\nSubject: quoting\nMessage-ID: <{quoted_mid}>\n\n"
        "Hello\nFrom the start of a line\nand a line after it\nbye\n"
    ).encode()
    tb_msgs.append((quoted, 0x0001))
    tb_msgs.append((b"this is not a message at all\nno header here\n", 0x0001))  # malformed: listed
    tb_msgs.append((tb_msgs[0][0], 0x0001))  # the same message twice: one duplicate
    tb_msgs.append((unique(corpus[0], "gone")[0], 0x0009))  # expunged in Thunderbird: skipped

    py_file = upload(api, mbx, "Archive.mbox", python_mbox(py_msgs))
    tb_file = upload(api, mbx, "Sent Items", thunderbird_mbox(tb_msgs))
    result = run_import(api, mbx, [py_file, tb_file])
    assert result["status"] == "completed", result
    delivered_ok = 20 + 20 + 1  # corpus messages of both files and the quoting one
    counts = result["counts"]
    assert counts["imported"] <= delivered_ok and counts["duplicates_skipped"] >= 1, result
    assert counts["failed"] >= 2  # the malformed one and the expunged one
    reasons = [f["reason"] for f in result["failures"]]
    assert any("header" in r for r in reasons) and any("expunged" in r for r in reasons)
    report = {f["source_folder"]: f for f in result["folders"]}
    assert report["Archive"]["role"] is None and report["Sent Items"]["target_folder"] == "Sent"

    boxes = folders(api, mbx["address"])
    role_of = {b: m.get("role") for b, m in boxes.items()}
    by_mid: dict[str, list[dict[str, Any]]] = {}
    for e in emails(api, mbx["address"]):
        for mid in e.get("messageId") or []:
            by_mid.setdefault(mid, []).append(e)
    # Every message once, in the folder its file maps to, with its flags; the corpus files the
    # mail server refuses (invalid header) are listed as failed with its reason instead.
    refused = {f["message_id"] for f in result["failures"]}
    imported = 0
    for raw, flags in py_msgs:
        mid = raw.split(b"Message-ID: <", 1)[1].split(b">", 1)[0].decode()
        if mid in refused:
            assert mid not in by_mid
            continue
        imported += 1
        assert len(by_mid[mid]) == 1
        e = by_mid[mid][0]
        assert [role_of[b] for b in e["mailboxIds"]] == ["archive"]
        assert ("$seen" in e["keywords"]) == ("R" in flags)
        assert ("$answered" in e["keywords"]) == ("A" in flags)
    for raw, status in tb_msgs[:20]:
        mid = raw.split(b"Message-ID: <", 1)[1].split(b">", 1)[0].decode()
        if mid in refused:
            assert mid not in by_mid
            continue
        imported += 1
        assert len(by_mid[mid]) == 1
        e = by_mid[mid][0]
        assert [role_of[b] for b in e["mailboxIds"]] == ["sent"]
        assert ("$flagged" in e["keywords"]) == bool(status & 0x4)
    assert imported + 1 == counts["imported"] and imported >= 35
    (quoted_email,) = by_mid[quoted_mid]
    body = blob(api, mbx["address"], quoted_email["blobId"])
    assert b"\r\n\r\nHello\r\nFrom the start of a line\r\nand a line after it\r\n" in body
    assert len(by_mid[existing_mid]) == 1

    undone = undo(api, mbx, result["id"])
    assert undone["status"] == "undone"
    assert snapshot(api, mbx["address"]) == before


def test_single_eml_and_bad_requests(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "single")
    raw, mid = unique(corpus_bytes("plain_emails/basic_email.eml"), "one")
    result = run_import(api, mbx, [upload(api, mbx, "one.eml", raw)])
    assert result["status"] == "completed" and result["counts"]["imported"] == 1
    (e,) = emails(api, mbx["address"])
    assert e["messageId"] == [mid]
    # One upload serves one import; a file of another mailbox is refused; no second PUT.
    other = new_mailbox(api, "other")
    foreign = upload(api, other, "x.eml", raw)
    body = {"source": {"type": "files", "provider": "file", "file_ids": [foreign]}}
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/imports", json=body, headers=api.auth())
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "source.file_ids[0]"
    # Upload limits: more bytes than declared is 413, fewer 422; nothing stays on disk.
    staged = api.client.post(
        f"/v1/mailboxes/{mbx['id']}/imports/files", json={"file_name": "a.mbox", "size_bytes": 10}, headers=api.auth()
    ).json()
    assert api.client.put(staged["upload_url"], content=b"x" * 11).status_code == 413
    assert api.client.put(staged["upload_url"], content=b"x" * 9).status_code == 422
    assert not import_service.file_path(api.settings, staged["file_id"]).exists()
    assert api.client.put(staged["upload_url"].replace("signature=", "signature=0"), content=b"x").status_code in (
        404,
        422,
    )
    # Another organisation sees nothing.
    stranger = api.new_key(org="globex")
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/imports/{result['id']}", headers=api.auth(stranger))
    assert r.status_code == 404
    # Exports need the mailboxes:export scope.
    reader = api.new_key(scopes=["mailboxes:write"])
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/exports", headers=api.auth(reader))
    assert r.status_code == 403


def test_failed_export_leaves_no_file_and_says_why(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    mbx = new_mailbox(api, "failing")
    for i in range(3):
        assert api.lmtp(mbx["address"], unique(corpus_bytes("plain_emails/basic_email.eml"), f"f{i}")[0]) == {}
    svc = api.client.app.state.services  # type: ignore[attr-defined]
    real = svc.jmap.open_blob
    calls = {"n": 0}

    async def flaky(*args: Any, **kwargs: Any) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] >= 2:
            raise ServiceUnavailable("The mail server is unavailable; retry shortly.")
        answer: httpx.Response = await real(*args, **kwargs)
        return answer

    monkeypatch.setattr(svc.jmap, "open_blob", flaky)
    monkeypatch.setattr(export_service, "RETRY_SECONDS", 0)
    done = export(api, mbx)
    assert calls["n"] > export_service.MAX_ATTEMPTS  # retried from the start, then failed
    assert done["status"] == "failed" and done["error_code"] == "source_unavailable" and done["error"]
    assert done["download_url"] is None
    leftovers = list(export_service.exports_dir(api.settings).glob(f"{done['id']}*"))
    assert leftovers == []

    # A completed export expires: its file is deleted and the URL stops working.
    monkeypatch.setattr(svc.jmap, "open_blob", real)
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/exports", headers=api.auth())
    finished = wait(api, f"/v1/mailboxes/{mbx['id']}/exports/{r.json()['id']}", {"completed"})
    assert api.client.get(finished["download_url"]).status_code == 200

    async def age() -> None:
        from datetime import timedelta

        from shipmail import utc
        from shipmail.exports.models import MailboxExport

        async with svc.db.session() as session:
            row = await session.get(MailboxExport, finished["id"])
            assert row is not None
            row.expires_at = utc.now() - timedelta(seconds=1)
            session.add(row)
            await session.commit()
        await export_service.expire(svc, finished["id"])

    api.client.portal.call(age)  # type: ignore[union-attr]
    gone = api.client.get(f"/v1/mailboxes/{mbx['id']}/exports/{finished['id']}", headers=api.auth()).json()
    assert gone["status"] == "expired" and gone["download_url"] is None
    assert not export_service.file_path(api.settings, finished["id"]).exists()
    assert api.client.get(finished["download_url"]).status_code == 404


@pytest.fixture
def private_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let IMAP sources be 127.0.0.1 (our own Cyrus), for the app the ``api`` fixture builds next."""
    monkeypatch.setenv("SHIPMAIL_IMPORT_PRIVATE_HOSTS", "true")


def imap_source(api: ApiEnv, address: str, password: str = "CorrectHorse9") -> dict[str, Any]:
    return {
        "type": "imap",
        "provider": "imap",
        "email": address,
        "password": password,
        "host": "127.0.0.1",
        "port": api.cyrus.instance.imap_port,
    }


def test_imap_source_pulls_every_folder_and_resumes(
    private_hosts: None, api: ApiEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = new_mailbox(api, "imapsrc")
    work = create_folder(api, source, "Work")
    clients = create_folder(api, source, "Clients", work)
    mids = []
    for i in range(14):
        raw, mid = unique(corpus_bytes("plain_emails/basic_email.eml"), f"imap{i}")
        assert api.lmtp(source["address"], raw) == {}
        mids.append(mid)
    boxes = folders(api, source["address"])
    roles = {m["role"]: m["id"] for m in boxes.values() if m.get("role")}
    spread = [roles["inbox"], work[4:], clients[4:], roles["sent"], roles["junk"]]
    update = {
        e["id"]: {"mailboxIds": {spread[i % len(spread)]: True}, "keywords": {"$seen": True} if i % 2 else {}}
        for i, e in enumerate(sorted(emails(api, source["address"]), key=lambda e: e["id"]))
    }
    assert not jmap(api, source["address"], [["Email/set", {"update": update}, "u"]])[0][1].get("notUpdated")
    expected = {
        (e["messageId"][0], path_of(boxes, next(iter(e["mailboxIds"]))), "$seen" in e["keywords"], e["receivedAt"])
        for e in emails(api, source["address"])
        if roles["junk"] not in e["mailboxIds"]  # Junk is left out by default
    }

    # Fail the third batch once: the job is retried and resumes after the last stored batch.
    monkeypatch.setattr(import_service, "BATCH", 3)
    monkeypatch.setattr(import_service, "RETRY_SECONDS", 0)
    real_upload = import_service._Run._upload
    calls = {"n": 0}

    async def flaky(self: Any, raws: list[bytes]) -> list[str]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ServiceUnavailable("The mail server is unavailable; retry shortly.")
        return await real_upload(self, raws)

    monkeypatch.setattr(import_service._Run, "_upload", flaky)
    target = new_mailbox(api, "imapdst")
    body = {"source": imap_source(api, source["address"])}
    r = api.client.post(f"/v1/mailboxes/{target['id']}/imports", json=body, headers=api.auth())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["kind"] == "imap" and created["source_address"] == source["address"]
    assert "CorrectHorse9" not in r.text
    stored = stored_secret(api, created["id"])
    assert stored is None or (stored and "CorrectHorse9" not in stored)
    result = wait(api, f"/v1/mailboxes/{target['id']}/imports/{created['id']}", {"completed", "failed"})
    assert result["status"] == "completed", result
    assert calls["n"] > 3  # the failed batch was retried
    assert result["counts"]["imported"] == len(expected) and result["counts"]["duplicates_skipped"] == 0
    assert stored_secret(api, created["id"]) is None  # the password is gone once the import ends

    dst_boxes = folders(api, target["address"])
    got = {
        (e["messageId"][0], path_of(dst_boxes, next(iter(e["mailboxIds"]))), "$seen" in e["keywords"], e["receivedAt"])
        for e in emails(api, target["address"])
    }
    assert got == expected

    # A wrong password fails the import and says why.
    body = {"source": imap_source(api, source["address"], "WrongHorse99")}
    r = api.client.post(f"/v1/mailboxes/{target['id']}/imports", json=body, headers=api.auth())
    assert r.status_code == 201, r.text
    failed = wait(api, f"/v1/mailboxes/{target['id']}/imports/{r.json()['id']}", {"completed", "failed"})
    assert failed["status"] == "failed" and "login" in failed["error"]


def test_imap_source_refuses_private_hosts_by_default(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "privhost")
    body = {"source": imap_source(api, mbx["address"])}
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/imports", json=body, headers=api.auth())
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "private_host"


def stored_secret(api: ApiEnv, import_id: str) -> str | None:
    svc: Any = api.client.app.state.services  # type: ignore[attr-defined]

    async def read() -> str | None:
        from shipmail.imports.models import MailboxImport

        async with svc.db.session() as session:
            row = await session.get(MailboxImport, import_id)
            assert row is not None
            secret: str | None = row.secret
            return secret

    result: str | None = api.client.portal.call(read)  # type: ignore[union-attr]
    return result


def test_sdk_export_and_import_methods(api: ApiEnv) -> None:
    """The official SDK's create_export/get_export, create_import_upload/create_import/list_imports/
    get_import/cancel_import/undo_import against the server."""
    from tests.integration.test_folders import load_sdk

    client = load_sdk().client(api)
    source = new_mailbox(api, "sdksrc")
    for i in range(3):
        assert api.lmtp(source["address"], unique(corpus_bytes("plain_emails/basic_email.eml"), f"sdk{i}")[0]) == {}
    started = client.mailboxes.create_export(source["id"])
    assert started["object"] == "mailbox_export" and started["status"] in ("pending", "processing")
    deadline = time.monotonic() + 120
    while (done := client.mailboxes.get_export(source["id"], started["id"]))["status"] != "completed":
        assert done["status"] != "failed" and time.monotonic() < deadline, done
        time.sleep(0.2)
    data = api.client.get(done["download_url"]).content

    target = new_mailbox(api, "sdkdst")
    staged = client.mailboxes.create_import_upload(target["id"], {"file_name": "export.zip", "size_bytes": len(data)})
    assert api.client.put(staged["upload_url"], content=data).status_code == 200
    created = client.mailboxes.create_import(
        target["id"], {"source": {"type": "files", "provider": "file", "file_ids": [staged["file_id"]]}}
    )
    while (imp := client.mailboxes.get_import(target["id"], created["id"]))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, imp
        time.sleep(0.2)
    assert imp["status"] == "completed" and imp["counts"]["imported"] == 3
    assert [i["id"] for i in client.mailboxes.list_imports(target["id"])["data"]] == [created["id"]]
    assert client.mailboxes.cancel_import(target["id"], created["id"])["status"] == "completed"
    assert client.mailboxes.undo_import(target["id"], created["id"])["status"] in ("undo_queued", "undoing", "undone")
    assert wait(api, f"/v1/mailboxes/{target['id']}/imports/{created['id']}", {"undone"})["counts"]["undone"] == 3


def test_cancel_stops_an_import_and_undo_removes_what_it_added(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_service, "BATCH", 2)
    mbx = new_mailbox(api, "cancel")
    msgs = [(unique(corpus_bytes("plain_emails/basic_email.eml"), f"c{i}")[0], "RO") for i in range(80)]
    file_id = upload(api, mbx, "Inbox.mbox", python_mbox(msgs))
    body = {"source": {"type": "files", "provider": "file", "file_ids": [file_id]}}
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/imports", json=body, headers=api.auth())
    assert r.status_code == 201, r.text
    url = f"/v1/mailboxes/{mbx['id']}/imports/{r.json()['id']}"
    # A second import of the same mailbox while this one runs: 409.
    again = api.client.post(f"/v1/mailboxes/{mbx['id']}/imports", json=body, headers=api.auth())
    assert again.status_code == 409
    deadline = time.monotonic() + 60
    while api.client.get(url, headers=api.auth()).json()["counts"]["imported"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancelled = api.client.post(url + "/cancel", headers=api.auth())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    time.sleep(1.5)  # the job notices before its next batch
    final = api.client.get(url, headers=api.auth()).json()
    assert final["status"] == "cancelled" and 2 <= final["counts"]["imported"] < 80
    assert len(emails(api, mbx["address"])) == final["counts"]["imported"]
    assert not import_service.file_path(api.settings, file_id).exists()
    assert undo(api, mbx, final["id"])["counts"]["undone"] == final["counts"]["imported"]
    assert emails(api, mbx["address"]) == []
    # Undone already: 409.
    assert api.client.post(url + "/undo", headers=api.auth()).status_code == 409
