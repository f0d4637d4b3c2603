"""Mailbox imports: staged uploads, the import job, cancel and undo.

Source: Shipmail ``createMailboxImportUpload`` (``POST /v1/mailboxes/{id}/imports/files``; the
bytes are then PUT to the presigned ``upload_url``, streamed to ``<data dir>/imports/<file id>``),
``createMailboxImport``, ``listMailboxImports``, ``getMailboxImport``, ``cancelMailboxImport``,
``undoMailboxImport``. Formats: :mod:`shipmail.imports.sources`; IMAP: :mod:`shipmail.imports.imap`;
folders: :mod:`shipmail.imports.mapping`.

The job (``imports.run``, one at a time per mailbox through the queue's ordering key) reads the
source message by message and imports them in batches of :data:`BATCH`: each message is
uploaded as a blob (RFC 8620 section 6.1), then one ``Email/import`` (RFC 8621 section 4.8)
stores the batch with its folders, keywords and received dates. Per batch, in one commit: the
created email ids (``import_items``, what undo removes), the counts, the per-folder report and
the cursor (where a resumed run continues). Before the ``Email/import`` the batch's blob ids are
committed as ``pending_blobs``: a run resumed after a crash between the import and its commit
finds those messages ``alreadyExists`` and recognises them as its own.

* Folders: each source folder maps to a folder of the mailbox (:func:`shipmail.imports.mapping.target`),
  created when missing (recorded, so undo removes it if it is empty again). Junk/Spam and Trash
  are left out unless ``include_spam``/``include_trash``; ``folders`` limits the source folders,
  ``range`` the received dates.
* Duplicates: a message whose Message-ID and size match a message already in the target folder
  (read once per folder: Email/query + Email/get of ``messageId``/``size``), or whose bytes are
  already in the account (Cyrus: ``alreadyExists``), is skipped and counted in
  ``duplicates_skipped``; a message without Message-ID is a duplicate only when its bytes are.
* Malformed messages (empty, no header block, refused by the mail server as ``invalidEmail``) are
  skipped, counted in ``failed`` and listed with the reason (the first :data:`MAX_FAILURES`);
  the import goes on.
* Cancel sets ``cancelled``; the job stops before its next batch. Undo (job ``imports.undo``)
  destroys the emails in ``import_items`` (Email/set destroy, :data:`UNDO_BATCH` per request) and
  then the folders the import created that are empty, deepest first: mail that was in the mailbox
  before is never touched.
* When an import ends (completed, failed, cancelled) its staged files are deleted and the IMAP
  password (encrypted, :mod:`shipmail.imports.secrets`) is cleared.
"""

from __future__ import annotations

import asyncio
import logging
import os
import unicodedata
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from jmapc.methods import EmailGet, EmailSet, MailboxGet, MailboxSet
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request as HttpRequest

from shipmail import jobs, utc
from shipmail.config import Settings
from shipmail.db import repository
from shipmail.http.errors import Conflict, NotFound, ServiceUnavailable, ShipmailError, ValidationFailed, detail
from shipmail.http.routing import stream_body_to
from shipmail.http.signed import sign
from shipmail.ids import new_id
from shipmail.imports import mapping, secrets
from shipmail.imports.imap import ImapFolder, ImapReader, ImapSourceError
from shipmail.imports.models import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    FAILED,
    FILE_PENDING,
    FILE_UPLOADED,
    FILE_USED,
    QUEUED,
    RUNNING,
    UNDO_FAILED,
    UNDO_QUEUED,
    UNDOABLE,
    UNDOING,
    UNDONE,
    ImportFile,
    ImportItem,
    MailboxImport,
)
from shipmail.imports.schemas import CreateMailboxImportRequest, FilesSource, ImapSource
from shipmail.imports.sources import SourceMessage, crlf, message_id, problem_of, read_file
from shipmail.jmap import email as jemail
from shipmail.jmap.request import Request
from shipmail.mailboxes.models import Mailbox
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.imports")

JOB_RUN = "imports.run"
JOB_UNDO = "imports.undo"
JOB_PURGE = "imports.purge_staged"
#: Messages per Email/import request.
BATCH = 25
#: Uploads in flight at once.
UPLOAD_CONCURRENCY = 4
#: Emails destroyed per Email/set request when undoing.
UNDO_BATCH = 256
#: Malformed messages listed on the import (all are counted).
MAX_FAILURES = 1000
#: How long an upload URL works, and how long a staged file is kept unused.
UPLOAD_URL_SECONDS = 3600
FILE_TTL = timedelta(hours=24)
#: Messages per Email/query page when reading a folder's Message-IDs for duplicates.
DEDUP_PAGE = 1024
#: Attempts of a run that meets an unavailable mail server before it fails.
MAX_ATTEMPTS = 5
#: First delay (seconds) before such a run is tried again (doubling with each attempt).
RETRY_SECONDS = 10
RANGES = {"12m": timedelta(days=365), "3m": timedelta(days=92), "1m": timedelta(days=31)}


def files_dir(settings: Settings) -> Path:
    return settings.data_dir / "imports"


def file_path(settings: Settings, file_id: str) -> Path:
    """Where the staged file ``file_id`` is kept."""
    return files_dir(settings) / file_id


def upload_path(mailbox_id: str, file_id: str) -> str:
    return f"/v1/mailboxes/{mailbox_id}/imports/files/{file_id}"


# ------------------------------------------------------------------------------ staged files


async def stage_upload(
    session: AsyncSession, settings: Settings, mailbox: Mailbox, file_name: str, size_bytes: int
) -> tuple[ImportFile, str]:
    """A staged file waiting for its bytes, and its presigned upload URL (PUT). The periodic
    sweep of unused staged files (job ``imports.purge_staged``) is enqueued with it."""
    now = utc.now()
    row = ImportFile(
        id=new_id("impf"),
        organization_id=mailbox.organization_id,
        mailbox_id=mailbox.id,
        file_name=file_name,
        size_bytes=size_bytes,
        state=FILE_PENDING,
        created_at=now,
        expires_at=now + FILE_TTL,
    )
    session.add(row)
    await jobs.enqueue(session, JOB_PURGE, key=JOB_PURGE, run_at=now + FILE_TTL)
    await session.commit()
    expires = int(now.timestamp()) + UPLOAD_URL_SECONDS
    return row, sign(settings.secret_key, "PUT", upload_path(mailbox.id, row.id), expires)


async def receive_upload(
    session: AsyncSession, settings: Settings, mailbox_id: str, file_id: str, request: HttpRequest
) -> ImportFile:
    """Stream the request body into the staged file ``file_id`` (memory: one network chunk).

    404: no such staged file of that mailbox. 409: its bytes were already received. 413: more
    bytes than ``size_bytes`` declared. 422: fewer. Nothing is kept of a failed upload."""
    row = await session.get(ImportFile, file_id)
    if row is None or row.mailbox_id != mailbox_id or row.expires_at < utc.now():
        raise NotFound(f"No staged import file with id {file_id!r}.")
    if row.state != FILE_PENDING:
        raise Conflict("This file was uploaded already.")
    await session.commit()  # no transaction held while the bytes arrive
    target = file_path(settings, file_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with open(partial, "wb") as out:
            size = await stream_body_to(request, out.write, row.size_bytes)
        if size != row.size_bytes:
            raise ValidationFailed(
                f"Received {size} bytes; the upload declared {row.size_bytes}.",
                details=[detail("body", "size_mismatch", "the body's size differs from size_bytes")],
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    row = await session.get(ImportFile, file_id, populate_existing=True)
    if row is None:
        target.unlink(missing_ok=True)
        raise NotFound(f"No staged import file with id {file_id!r}.")
    row.state = FILE_UPLOADED
    session.add(row)
    await session.commit()
    return row


# ---------------------------------------------------------------------------------- requests


def _new_counts() -> dict[str, int]:
    return {"found": 0, "imported": 0, "undone": 0, "duplicates_skipped": 0, "oversize_skipped": 0, "failed": 0}


async def create(
    session: AsyncSession, settings: Settings, mailbox: Mailbox, body: CreateMailboxImportRequest
) -> MailboxImport:
    """Queue an import (see the module docstring). 409 while another import of the mailbox is
    queued or running; 422 for files that are not this mailbox's uploaded, unused staged files,
    or an IMAP source without a usable host."""
    running = (
        await session.exec(
            select(MailboxImport).where(MailboxImport.mailbox_id == mailbox.id, col(MailboxImport.status).in_(ACTIVE))
        )
    ).first()
    if running is not None:
        raise Conflict("An import is already running for this mailbox.")
    now = utc.now()
    row = MailboxImport(
        id=new_id("imp"),
        organization_id=mailbox.organization_id,
        mailbox_id=mailbox.id,
        kind="file",
        provider="file",
        status=QUEUED,
        counts=_new_counts(),
        options=body.options.model_dump(),
        created_at=now,
    )
    source = body.source
    if isinstance(source, FilesSource):
        row.provider = source.provider
        total = 0
        for index, file_id in enumerate(source.file_ids):
            staged = await session.get(ImportFile, file_id)
            field = f"source.file_ids[{index}]"
            if staged is None or staged.mailbox_id != mailbox.id or staged.state != FILE_UPLOADED:
                message = "not an uploaded, unused import file of this mailbox"
                raise ValidationFailed(
                    f"File {file_id!r} is {message}.", details=[detail(field, "invalid_file", message)]
                )
            staged.state = FILE_USED
            staged.import_id = row.id
            session.add(staged)
            total += staged.size_bytes
        if len(set(source.file_ids)) != len(source.file_ids):
            raise ValidationFailed(
                "A file is listed twice.", details=[detail("source.file_ids", "duplicate", "a file is listed twice")]
            )
        row.file_ids = list(source.file_ids)
        row.bytes_total = total
    else:
        _check_imap(settings, source)
        row.kind = "imap"
        row.provider = source.provider
        row.source_address = source.email
        row.imap_host = source.host
        row.imap_port = source.port
        row.secret = secrets.seal(settings.secret_key, source.password)
    session.add(row)
    await jobs.enqueue(session, JOB_RUN, {"import_id": row.id}, ordering_key=f"imports:{mailbox.id}")
    await session.commit()
    await session.refresh(row)
    return row


def _check_imap(settings: Settings, source: ImapSource) -> None:
    if source.provider != "imap":
        message = "only provider imap (with host) is served; named providers are not preconfigured"
        raise ValidationFailed(
            f"Provider {source.provider!r}: {message}.",
            details=[detail("source.provider", "unsupported_provider", message)],
        )
    if not source.host:
        raise ValidationFailed(
            "host is required for provider imap.",
            details=[detail("source.host", "missing", "required for provider imap")],
        )
    if not settings.import_private_hosts and _is_private(source.host):
        message = "the host is a loopback, private or link-local address"
        raise ValidationFailed(
            f"Host {source.host!r}: {message}.", details=[detail("source.host", "private_host", message)]
        )


def _is_private(host: str) -> bool:
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False  # unresolvable: the job fails with a connection error
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_reserved
            or address.is_unspecified
        ):
            return True
    return False


async def get(session: AsyncSession, organization_id: str, mailbox_id: str, import_id: str) -> MailboxImport:
    row = await repository.get_owned(session, MailboxImport, organization_id, import_id)
    if row is None or row.mailbox_id != mailbox_id:
        raise NotFound(f"No import with id {import_id!r}.")
    return row


async def recent(session: AsyncSession, mailbox_id: str, limit: int = 50) -> list[MailboxImport]:
    """The mailbox's last ``limit`` imports, newest first."""
    rows = await session.exec(
        select(MailboxImport)
        .where(MailboxImport.mailbox_id == mailbox_id)
        .order_by(col(MailboxImport.created_at).desc(), col(MailboxImport.id).desc())
        .limit(limit)
    )
    return list(rows.all())


async def cancel(
    svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, import_id: str
) -> MailboxImport:
    """Stop a queued or running import (mail already imported stays); others are returned as they are."""
    row = await repository.get_owned(session, MailboxImport, organization_id, import_id, for_update=True)
    if row is None or row.mailbox_id != mailbox_id:
        raise NotFound(f"No import with id {import_id!r}.")
    if row.status in ACTIVE:
        row.status = CANCELLED
        row.status_detail = "Cancelled; mail already imported stays in the mailbox."
        row.completed_at = utc.now()
        row.secret = None
        session.add(row)
        await session.commit()
        _remove_files(svc.settings, row)
        await session.refresh(row)
    return row


async def undo(session: AsyncSession, organization_id: str, mailbox_id: str, import_id: str) -> MailboxImport:
    """Queue the undo of a finished import. 409 while it runs (cancel first) or once undone."""
    row = await repository.get_owned(session, MailboxImport, organization_id, import_id, for_update=True)
    if row is None or row.mailbox_id != mailbox_id:
        raise NotFound(f"No import with id {import_id!r}.")
    if row.status in (UNDO_QUEUED, UNDOING):
        return row
    if row.status not in UNDOABLE:
        raise Conflict(
            f"An import in status {row.status!r} cannot be undone"
            + (" (cancel it first)." if row.status in ACTIVE else ".")
        )
    row.status = UNDO_QUEUED
    row.status_detail = None
    session.add(row)
    await jobs.enqueue(session, JOB_UNDO, {"import_id": row.id}, ordering_key=f"imports:{mailbox_id}")
    await session.commit()
    await session.refresh(row)
    return row


def _remove_files(settings: Settings, row: MailboxImport) -> None:
    for file_id in row.file_ids or []:
        file_path(settings, str(file_id)).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------- job


class _Stop(Exception):
    """The import was cancelled (or removed) while it ran."""


@dataclass
class _Target:
    mailbox_ids: list[str]
    labels: list[str]


class _Run:
    """One run of an import (possibly resuming an earlier one)."""

    def __init__(self, svc: Services, row: MailboxImport, address: str) -> None:
        self.svc = svc
        self.id = row.id
        self.address = address
        self.options = dict(row.options or {})
        self.counts = {**_new_counts(), **{k: int(v) for k, v in (row.counts or {}).items()}}
        self.bytes_imported = row.bytes_imported
        self.folders: dict[str, dict[str, Any]] = {str(f["source_folder"]): dict(f) for f in row.folders or []}
        self.failures: list[dict[str, Any]] = list(row.failures or [])
        self.created_folders: list[str] = [str(f) for f in row.created_folders or []]
        self.previous_pending = {str(b) for b in row.pending_blobs or []}
        self.cursor: dict[str, Any] = dict(row.cursor or {})
        self.by_role: dict[str, str] = {}
        self.by_parent: dict[tuple[str | None, str], str] = {}
        self.names: dict[str, str] = {}
        self.targets: dict[tuple[str, ...], tuple[str | None, str | None]] = {}
        self.known: dict[str, set[tuple[str, int]]] = {}
        cutoff = RANGES.get(str(self.options.get("range") or "all"))
        self.cutoff = utc.now() - cutoff if cutoff else None
        wanted = self.options.get("folders")
        self.only = {str(f) for f in wanted} if isinstance(wanted, list) else None

    # ---------------------------------------------------------------- folders

    async def load_tree(self) -> None:
        request = Request()
        call = request.add(MailboxGet(ids=None, properties=["id", "name", "parentId", "role"]))
        listed = (await self.svc.jmap.call(self.address, request)).get(call, what="folder listing")["list"]
        for m in listed:
            if m.get("role"):
                self.by_role[str(m["role"])] = str(m["id"])
            self.by_parent[(m.get("parentId") or None, unicodedata.normalize("NFC", str(m.get("name") or "")))] = str(
                m["id"]
            )
            self.names[str(m["id"])] = str(m.get("name") or "")

    async def folder_for(self, path: list[str], role: str | None) -> tuple[str | None, str | None, str | None]:
        """(JMAP Mailbox id or None when skipped/failed, the target's label, why not)."""
        key = (*path, "\x00", role or "")
        if key in self.targets:
            found, why = self.targets[key]
            return found, self._label(found), why
        system, names = mapping.target(path, role)
        result: tuple[str | None, str | None]
        if system == "junk" and not self.options.get("include_spam"):
            result = (None, "skipped: Junk/Spam (include_spam is false)")
        elif system == "trash" and not self.options.get("include_trash"):
            result = (None, "skipped: Trash (include_trash is false)")
        else:
            parent = self.by_role.get(system) if system is not None else None
            if system is not None and parent is None:
                parent, names = None, [mapping.clean_name(path[-1] if path else system.capitalize())]
            try:
                for name in names:
                    parent = await self._child(parent, name)
                result = (parent, None) if parent is not None else (self.by_role.get("inbox"), None)
            except ShipmailError as exc:
                result = (None, f"the folder could not be created: {exc.message}")
        self.targets[key] = result
        return result[0], self._label(result[0]), result[1]

    def _label(self, mailbox_id: str | None) -> str | None:
        return self.names.get(mailbox_id) if mailbox_id else None

    async def _child(self, parent: str | None, name: str) -> str:
        if parent is None and name.casefold() in {"inbox", "drafts", "sent", "trash", "junk", "archive"}:
            name = name + " (imported)"
        existing = self.by_parent.get((parent, name))
        if existing is not None:
            return existing
        request = Request()
        create: dict[str, Any] = {"f": {"name": name, "parentId": parent}}
        written = request.add(MailboxSet(create=create))
        answer = (await self.svc.jmap.call(self.address, request)).get(written, what="folder create")
        created = (answer.get("created") or {}).get("f")
        if not created:
            error = (answer.get("notCreated") or {}).get("f") or {}
            raise ValidationFailed(str(error.get("description") or error.get("type") or "refused"))
        new = str(created["id"])
        self.by_parent[(parent, name)] = new
        parent_name = self.names.get(parent, "") if parent else ""
        self.names[new] = f"{parent_name}/{name}" if parent_name else name
        self.created_folders.append(new)
        await self._save(created_folders=list(self.created_folders))
        return new

    async def known_in(self, mailbox_id: str) -> set[tuple[str, int]]:
        """(Message-ID, size) of every message in the folder, read once."""
        if mailbox_id in self.known:
            return self.known[mailbox_id]
        found: set[tuple[str, int]] = set()
        position = 0
        while True:
            request = Request()
            query = request.add(
                jemail.query(
                    {"inMailbox": mailbox_id},
                    [{"property": "id", "isAscending": True}],
                    limit=DEDUP_PAGE,
                    position=position,
                )
            )
            got = request.add(EmailGet(ids=request.ref(query, "/ids"), properties=["id", "messageId", "size"]))
            results = await self.svc.jmap.call(self.address, request)
            ids = results.get(query, what="duplicate check").get("ids") or []
            for email in results.get(got, what="duplicate check").get("list") or []:
                for mid in email.get("messageId") or []:
                    found.add((str(mid), int(email.get("size") or 0)))
            position += len(ids)
            if len(ids) < DEDUP_PAGE:
                break
        self.known[mailbox_id] = found
        return found

    # ---------------------------------------------------------------- state

    async def _save(self, **values: Any) -> str:
        """Write ``values`` to the row; its status (``_Stop`` when it is gone)."""
        async with self.svc.db.session() as session:
            row = await session.get(MailboxImport, self.id)
            if row is None:
                raise _Stop()
            for name, value in values.items():
                setattr(row, name, value)
            session.add(row)
            await session.commit()
            return row.status

    async def status(self) -> str:
        async with self.svc.db.session() as session:
            row = await session.get(MailboxImport, self.id)
            if row is None:
                raise _Stop()
            return row.status

    def report(self, source: str, label: str | None, role: str | None) -> dict[str, Any]:
        entry = self.folders.get(source)
        if entry is None:
            entry = {
                "source_folder": source,
                "target_folder": label,
                "role": role,
                "state": "importing",
                "found": 0,
                "imported": 0,
                "duplicates": 0,
                "oversize": 0,
                "failed": 0,
            }
            self.folders[source] = entry
        return entry

    def fail(self, source: str, message: SourceMessage, reason: str, raw: bytes | None = None) -> None:
        self.counts["failed"] += 1
        self.report(source, None, None)["failed"] += 1
        if len(self.failures) < MAX_FAILURES:
            self.failures.append(
                {
                    "source_folder": source,
                    "position": message.position,
                    "message_id": message_id(raw) if raw else None,
                    "reason": reason[:300],
                }
            )

    # ---------------------------------------------------------------- batches

    async def batch(self, messages: list[SourceMessage], cursor: dict[str, Any]) -> None:
        """Import ``messages`` and commit the batch with ``cursor`` (where to resume after it)."""
        if await self.status() != RUNNING:
            raise _Stop()
        plan: list[tuple[SourceMessage, bytes, list[str], str]] = []
        batch_seen: set[tuple[tuple[str, ...], str, int]] = set()
        for message in messages:
            source = "/".join(message.folders[0][0]) if message.folders else "Inbox"
            if self.only is not None and not any("/".join(p) in self.only for p, _ in message.folders):
                continue
            if self.cutoff is not None and message.received_at is not None and message.received_at < self.cutoff:
                continue
            self.counts["found"] += 1
            targets: list[str] = []
            why: str | None = None
            for path, role in message.folders:
                mailbox_id, label, reason = await self.folder_for(path, role)
                entry = self.report("/".join(path), label, role)
                if mailbox_id is not None and mailbox_id not in targets:
                    targets.append(mailbox_id)
                    entry["found"] += 1
                why = why or reason
            if message.oversize:
                self.counts["oversize_skipped"] += 1
                self.report(source, None, None)["oversize"] += 1
                continue
            if message.raw is None:
                self.fail(source, message, message.problem or "unreadable")
                continue
            if not targets:
                self.counts["found"] -= 1
                continue  # a folder left out by the options
            raw = crlf(message.raw)
            problem = problem_of(raw)
            if problem is not None:
                self.fail(source, message, problem, raw)
                continue
            mid = message_id(raw)
            duplicate = False
            for target in targets:
                known = await self.known_in(target)
                if mid is not None and (mid, len(raw)) in known:
                    duplicate = True
            if mid is not None and (tuple(targets), mid, len(raw)) in batch_seen:
                duplicate = True  # a second copy in the same batch
            if duplicate:
                self.counts["duplicates_skipped"] += 1
                self.report(source, None, None)["duplicates"] += 1
                continue
            if mid is not None:
                batch_seen.add((tuple(targets), mid, len(raw)))
            plan.append((message, raw, targets, source))
        blob_ids = await self._upload([raw for _, raw, _, _ in plan])
        await self._save(pending_blobs=blob_ids)
        created_items: list[ImportItem] = []
        if plan:
            entries = {
                f"m{i}": jemail.import_entry(blob, targets, message.keywords, message.received_at)
                for i, ((message, _, targets, _), blob) in enumerate(zip(plan, blob_ids, strict=True))
            }
            request = Request()
            call = request.add(jemail.EmailImport(emails=entries))
            answer = (await self.svc.jmap.call(self.address, request)).get(call, what="message import")
            created = answer.get("created") or {}
            refused = answer.get("notCreated") or {}
            for i, (message, raw, targets, source) in enumerate(plan):
                cid = f"m{i}"
                if cid in created:
                    email_id = str(created[cid]["id"])
                    created_items.append(ImportItem(import_id=self.id, email_id=email_id, blob_id=blob_ids[i]))
                    self._imported(message, raw, targets, source)
                    continue
                error = refused.get(cid) or {}
                kind = error.get("type")
                if kind == "alreadyExists" and error.get("existingId"):
                    mine = blob_ids[i] in self.previous_pending or await self._ours(str(error["existingId"]))
                    if mine:
                        await self._add_folders(str(error["existingId"]), targets)
                        if blob_ids[i] in self.previous_pending and not await self._ours(str(error["existingId"])):
                            created_items.append(
                                ImportItem(import_id=self.id, email_id=str(error["existingId"]), blob_id=blob_ids[i])
                            )
                            self._imported(message, raw, targets, source)
                        continue
                    self.counts["duplicates_skipped"] += 1
                    self.report(source, None, None)["duplicates"] += 1
                    continue
                reason = str(error.get("description") or kind or "refused by the mail server")
                self.fail(source, message, f"{kind}: {reason}" if kind else reason, raw)
        self.cursor = cursor
        async with self.svc.db.session() as session:
            row = await session.get(MailboxImport, self.id)
            if row is None:
                raise _Stop()
            for item in created_items:
                session.add(item)
            row.counts = dict(self.counts)
            row.bytes_imported = self.bytes_imported
            row.folders = list(self.folders.values())
            row.failures = list(self.failures)
            row.cursor = dict(cursor)
            row.pending_blobs = []
            session.add(row)
            await session.commit()
        self.previous_pending = set()

    def _imported(self, message: SourceMessage, raw: bytes, targets: list[str], source: str) -> None:
        self.counts["imported"] += 1
        self.bytes_imported += len(raw)
        self.report(source, None, None)["imported"] += 1
        mid = message_id(raw)
        for target in targets:
            if mid is not None and target in self.known:
                self.known[target].add((mid, len(raw)))

    async def _ours(self, email_id: str) -> bool:
        async with self.svc.db.session() as session:
            found = await session.exec(
                select(ImportItem.id).where(ImportItem.import_id == self.id, ImportItem.email_id == email_id).limit(1)
            )
            return found.first() is not None

    async def _add_folders(self, email_id: str, targets: list[str]) -> None:
        patch = {f"mailboxIds/{t}": True for t in targets}
        request = Request()
        call = request.add(EmailSet(update={email_id: patch}))
        answer = (await self.svc.jmap.call(self.address, request)).get(call, what="message import")
        if email_id in (answer.get("notUpdated") or {}):
            logger.warning("import %s: could not add folders to an imported message", self.id)

    async def _upload(self, raws: list[bytes]) -> list[str]:
        limit = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def one(raw: bytes) -> str:
            async with limit:
                return await self.svc.jmap.upload(self.address, raw, "message/rfc822")

        return list(await asyncio.gather(*(one(raw) for raw in raws)))


async def _in_thread(iterator: Iterator[SourceMessage]) -> AsyncIterator[SourceMessage]:
    """Read ``iterator`` (blocking file I/O) in a worker thread, one message at a time."""
    done = object()
    while True:
        item = await asyncio.to_thread(next, iterator, done)
        if item is done:
            return
        assert isinstance(item, SourceMessage)
        yield item


async def run(svc: Services, import_id: str, *, attempt: int = 1) -> None:
    """Run (or resume) the import ``import_id`` (job ``imports.run``)."""
    async with svc.db.session() as session:
        row = await session.get(MailboxImport, import_id)
        if row is None or row.status not in ACTIVE:
            return
        mailbox = await session.get(Mailbox, row.mailbox_id)
        row.status = RUNNING
        row.started_at = row.started_at or utc.now()
        session.add(row)
        await session.commit()
        await session.refresh(row)
        address = mailbox.address if mailbox is not None else None
    if address is None:
        await _end(svc, import_id, FAILED, error="The mailbox no longer exists.")
        return
    work = _Run(svc, row, address)
    try:
        await work.load_tree()
        if row.kind == "imap":
            await _run_imap(svc, work, row)
        else:
            await _run_files(svc, work, row)
    except _Stop:
        await _end(svc, import_id, None)
        return
    except ServiceUnavailable as exc:
        if attempt < MAX_ATTEMPTS:
            raise jobs.Retry(after=min(300, RETRY_SECONDS * 2**attempt), reason=exc.message) from None
        await _end(svc, import_id, FAILED, error="The mailbox's mail server was unavailable: " + exc.message)
        return
    except (ImapSourceError, _Failed) as exc:
        await _end(svc, import_id, FAILED, error=str(exc))
        return
    except Exception as exc:
        logger.exception("import %s failed", import_id)
        await _end(svc, import_id, FAILED, error=f"The import failed ({type(exc).__name__}).")
        return
    await _end(svc, import_id, COMPLETED)


async def _run_files(svc: Services, work: _Run, row: MailboxImport) -> None:
    start_file = int(work.cursor.get("file", 0))
    for index, file_id in enumerate(row.file_ids or []):
        if index < start_file:
            continue
        start = int(work.cursor.get("position", 0)) if index == start_file else 0
        async with svc.db.session() as session:
            staged = await session.get(ImportFile, str(file_id))
            name = staged.file_name if staged is not None else str(file_id)
        path = file_path(svc.settings, str(file_id))
        if not path.exists():
            raise _Failed("A staged file is missing.")
        batch: list[SourceMessage] = []
        async for message in _in_thread(read_file(path, name, start)):
            batch.append(message)
            if len(batch) >= BATCH:
                await work.batch(batch, {"file": index, "position": message.position + 1})
                batch = []
        if batch:
            await work.batch(batch, {"file": index, "position": batch[-1].position + 1})
        await work.batch([], {"file": index + 1, "position": 0})


class _Failed(Exception):
    pass


async def _run_imap(svc: Services, work: _Run, row: MailboxImport) -> None:
    password = secrets.unseal(svc.settings.secret_key, row.secret or "")
    if password is None or not row.imap_host:
        raise ImapSourceError("The source password is no longer available; start a new import.")
    reader = ImapReader(row.imap_host, int(row.imap_port or 993), row.source_address or "", password)
    try:
        await asyncio.to_thread(reader.connect)
        folders = await asyncio.to_thread(reader.folders)
        start_folder = int(work.cursor.get("folder", 0))
        for index, folder in enumerate(folders):
            if index < start_folder:
                continue
            await _imap_folder(reader, work, index, folder, work.cursor if index == start_folder else {})
    finally:
        await asyncio.to_thread(reader.close)


async def _imap_folder(reader: ImapReader, work: _Run, index: int, folder: ImapFolder, cursor: dict[str, Any]) -> None:
    validity, uids = await asyncio.to_thread(reader.uids, folder)
    after = int(cursor.get("last_uid", 0)) if int(cursor.get("uidvalidity", -1)) == validity else 0
    uids = [u for u in uids if u > after]
    for start in range(0, len(uids), BATCH):
        chunk = uids[start : start + BATCH]
        fetched = await asyncio.to_thread(reader.fetch, chunk)
        messages = [
            SourceMessage(
                position=m.uid,
                folders=[(folder.path, folder.role)],
                raw=m.raw,
                keywords=m.keywords,
                received_at=m.received_at,
                size=len(m.raw),
            )
            for m in fetched
            if not m.deleted
        ]
        await work.batch(messages, {"folder": index, "uidvalidity": validity, "last_uid": chunk[-1]})
    await work.batch([], {"folder": index + 1})


async def _end(svc: Services, import_id: str, status: str | None, error: str | None = None) -> None:
    """Finish the import: ``status`` (None: keep the cancelled one), staged files deleted, the
    source password cleared."""
    async with svc.db.session() as session:
        row = await session.get(MailboxImport, import_id)
        if row is None:
            return
        if status is not None and row.status == RUNNING:
            row.status = status
            row.error = error
            row.completed_at = utc.now()
            state = "completed" if status == COMPLETED else "failed"
            row.folders = [{**f, "state": state} for f in row.folders or []]  # a new value: no in-place change
        row.secret = None
        row.pending_blobs = []
        session.add(row)
        await session.commit()
        _remove_files(svc.settings, row)


async def run_undo(svc: Services, import_id: str) -> None:
    """Undo the import ``import_id`` (job ``imports.undo``): destroy what it created."""
    async with svc.db.session() as session:
        row = await session.get(MailboxImport, import_id)
        if row is None or row.status not in (UNDO_QUEUED, UNDOING):
            return
        mailbox = await session.get(Mailbox, row.mailbox_id)
        row.status = UNDOING
        session.add(row)
        await session.commit()
        address = mailbox.address if mailbox is not None else None
        created_folders = [str(f) for f in row.created_folders or []]
    if address is None:
        await _set_status(svc, import_id, UNDO_FAILED, "The mailbox no longer exists.")
        return
    try:
        while True:
            async with svc.db.session() as session:
                items = list(
                    (
                        await session.exec(
                            select(ImportItem)
                            .where(ImportItem.import_id == import_id)
                            .order_by(col(ImportItem.id))
                            .limit(UNDO_BATCH)
                        )
                    ).all()
                )
            if not items:
                break
            request = Request()
            call = request.add(EmailSet(destroy=[i.email_id for i in items]))
            answer = (await svc.jmap.call(address, request)).get(call, what="undo")
            refused = {
                k: v for k, v in (answer.get("notDestroyed") or {}).items() if (v or {}).get("type") != "notFound"
            }
            if refused:
                raise _Failed(f"The mail server refused to delete {len(refused)} imported messages.")
            undone = len(answer.get("destroyed") or [])
            async with svc.db.session() as session:
                await session.exec(sa.delete(ImportItem).where(col(ImportItem.id).in_([i.id for i in items])))
                row = await session.get(MailboxImport, import_id)
                if row is not None:
                    counts = dict(row.counts or {})
                    counts["undone"] = int(counts.get("undone", 0)) + undone
                    row.counts = counts
                    session.add(row)
                await session.commit()
        for folder_id in reversed(created_folders):
            request = Request()
            call = request.add(MailboxSet(destroy=[folder_id], on_destroy_remove_emails=False))
            answer = (await svc.jmap.call(address, request)).get(call, what="undo")
            if folder_id in (answer.get("notDestroyed") or {}):
                logger.info("import %s undo: a created folder is not empty any more; kept", import_id)
    except (ServiceUnavailable, _Failed, ShipmailError) as exc:
        await _set_status(svc, import_id, UNDO_FAILED, getattr(exc, "message", None) or str(exc))
        return
    await _set_status(svc, import_id, UNDONE, None)


async def _set_status(svc: Services, import_id: str, status: str, detail_text: str | None) -> None:
    async with svc.db.session() as session:
        row = await session.get(MailboxImport, import_id)
        if row is None:
            return
        row.status = status
        row.status_detail = detail_text
        session.add(row)
        await session.commit()


async def purge_staged(svc: Services) -> int:
    """Delete staged files never used within :data:`FILE_TTL` (rows and bytes); how many."""
    removed = 0
    async with svc.db.session() as session:
        rows = (
            await session.exec(
                select(ImportFile).where(col(ImportFile.state) != FILE_USED, col(ImportFile.expires_at) < utc.now())
            )
        ).all()
        for row in rows:
            file_path(svc.settings, row.id).unlink(missing_ok=True)
            await session.delete(row)
            removed += 1
        await session.commit()
    return removed
