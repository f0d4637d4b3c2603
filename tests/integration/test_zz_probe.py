from __future__ import annotations
import json
from datetime import UTC, datetime
import httpx
from tests.integration.conftest import ApiEnv
from tests.integration.corpus import jmap


def test_probe(api: ApiEnv) -> None:
    mbx = api.new_mailbox("probe.example")
    address = mbx["address"]
    access = api.cyrus.server.jmap_access(address)
    upload = access.session_url.rsplit("/jmap/", 1)[0] + f"/jmap/upload/{address}/"
    msg = b"From: a@b.c\r\nTo: d@e.f\r\nSubject: hi\r\nMessage-ID: <x1@y>\r\n\r\nbody\r\n"
    r = httpx.post(upload, content=msg, headers={"Authorization": access.authorization, "Content-Type": "message/rfc822"})
    print("UPLOAD", r.status_code, r.text)
    blob = r.json()["blobId"]
    boxes = jmap(api, address, [["Mailbox/get", {"properties": ["id", "name", "role"]}, "a"]])[0][1]["list"]
    print(boxes)
    by = {b["role"]: b["id"] for b in boxes}
    def imp(mb: str, kw: dict) -> object:
        return jmap(api, address, [["Email/import", {"emails": {"m": {"blobId": blob, "mailboxIds": {mb: True}, "keywords": kw, "receivedAt": "2020-01-02T03:04:05Z"}}}, "i"]])
    print("IMP1", json.dumps(imp(by["inbox"], {"$seen": True})))
    print("IMP2 same", json.dumps(imp(by["inbox"], {})))
    print("IMP3 other", json.dumps(imp(by["archive"], {"$flagged": True})))
    print("GET", json.dumps(jmap(api, address, [["Email/query", {}, "q"], ["Email/get", {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}, "properties": ["id", "mailboxIds", "keywords", "receivedAt", "size", "blobId", "messageId"]}, "g"]])))
    # LF only
    r = httpx.post(upload, content=b"Subject: x\n\nbody\n", headers={"Authorization": access.authorization, "Content-Type": "message/rfc822"})
    b2 = r.json()["blobId"]
    print("LF", json.dumps(jmap(api, address, [["Email/import", {"emails": {"m": {"blobId": b2, "mailboxIds": {by["inbox"]: True}}}}, "i"]])))
    r = httpx.post(upload, content=b"garbage without headers", headers={"Authorization": access.authorization, "Content-Type": "message/rfc822"})
    b3 = r.json()["blobId"]
    print("GARB", json.dumps(jmap(api, address, [["Email/import", {"emails": {"m": {"blobId": b3, "mailboxIds": {by["inbox"]: True}}}}, "i"]])))
    r = httpx.post(upload, content=b"", headers={"Authorization": access.authorization, "Content-Type": "message/rfc822"})
    print("EMPTYUP", r.status_code, r.text)
