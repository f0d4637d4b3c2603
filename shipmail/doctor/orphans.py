"""Saving the mail of an account that no mailbox owns, before ``shipmail doctor --repair
--purge-orphans`` removes the account.

Layout: ``<root>/<address>-<UTC time>/`` (mode 0700; ``root`` is ``$SHIPMAIL_DATA_DIR/orphans``)
holds one file per message, ``000001.eml`` ... (mode 0600, the message exactly as the mail server
stores it: the Email's ``blobId``, RFC 8621 section 4.1.1), and ``MANIFEST.tsv``: one line per
file with its ``receivedAt``, the names of the folders it was in and its keywords, tab-separated.

JMAP: one ``Mailbox/get`` for the folder names, then per :data:`BATCH` messages one
``Email/query`` + ``Email/get`` (back-reference) and one blob download per message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from jmapc.methods import EmailGet, EmailQuery, MailboxGet

from shipmail import utc
from shipmail.http.errors import ServiceUnavailable
from shipmail.jmap.request import Request
from shipmail.runtime import Services

#: Messages listed per JMAP request.
BATCH = 200

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


def _tsv(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


async def save_mail(svc: Services, address: str, root: Path) -> tuple[Path, int]:
    """Write every message of ``address``'s account under a new directory of ``root`` (see the
    module docstring); ``(directory, messages written)``. 503 ServiceUnavailable when the mail
    server fails (what was written stays); ``OSError`` when the disk does."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = root / f"{_UNSAFE.sub('_', address)}-{utc.now():%Y%m%dT%H%M%S%fZ}"
    target.mkdir(mode=0o700)
    names_request = Request()
    names_call = names_request.add(MailboxGet(ids=None, properties=["id", "name"]))
    listed = (await svc.jmap.call(address, names_request)).get(names_call, what="folder listing")["list"]
    folder_names = {str(m["id"]): str(m.get("name") or "") for m in listed}
    written = 0
    position = 0
    with (target / "MANIFEST.tsv").open("w", encoding="utf-8") as manifest:
        os.chmod(manifest.fileno(), 0o600)
        manifest.write("file\treceived_at\tfolders\tkeywords\n")
        while True:
            request = Request()
            query = request.add(EmailQuery(position=position, limit=BATCH))
            got = request.add(
                EmailGet(
                    ids=request.ref(query, "/ids"), properties=["id", "blobId", "receivedAt", "mailboxIds", "keywords"]
                )
            )
            results = await svc.jmap.call(address, request)
            ids = results.get(query, what="message listing")["ids"]
            for email in results.get(got, what="messages")["list"]:
                written += 1
                name = f"{written:06d}.eml"
                await _download(svc, address, str(email["blobId"]), target / name)
                folders = ",".join(
                    sorted(folder_names.get(m, m) for m, on in (email.get("mailboxIds") or {}).items() if on)
                )
                keywords = ",".join(sorted(k for k, on in (email.get("keywords") or {}).items() if on))
                manifest.write(f"{name}\t{email.get('receivedAt') or ''}\t{_tsv(folders)}\t{_tsv(keywords)}\n")
            if len(ids) < BATCH:
                break
            position += BATCH
    return target, written


async def _download(svc: Services, address: str, blob_id: str, path: Path) -> None:
    response = await svc.jmap.open_blob(address, blob_id, content_type="message/rfc822")
    try:
        if response.status_code != 200:
            raise ServiceUnavailable(f"The mail server answered {response.status_code} for a message download.")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            async for chunk in response.aiter_bytes():
                out.write(chunk)
    finally:
        await response.aclose()
