"""Mailbox exports: a job writes the whole mailbox into a ZIP (:mod:`shipmail.exports.archive`).

Source: Shipmail ``POST /v1/mailboxes/{id}/exports`` (``createMailboxExport``), ``GET
/v1/mailboxes/{id}/exports/{export_id}`` (``getMailboxExport``) and the private download URL of a
completed export.

* :func:`create` records the export (``pending``) and enqueues its job in the same transaction;
  while one export of the mailbox is pending or processing, another create returns it (200).
* :func:`run` (job ``exports.run``) writes ``<data dir>/exports/<id>.zip.partial``: one JMAP
  Mailbox/get for the folder tree, then per folder one Email/query + Email/get per
  :data:`PAGE` messages (``receivedAt`` ascending) and one blob download per message, streamed
  chunk by chunk into the ZIP entry and the folder's mbox (kept in a temporary file until the
  folder is done). The manifest's message entries go to a temporary file as they are written and
  are copied into ``manifest.json`` at the end: memory stays flat whatever the mailbox's size.
  ``messages_done``/``messages_total`` are committed every :data:`PROGRESS_EVERY` messages. On
  success the file is renamed to ``<id>.zip`` and the export completes, expiring after
  :data:`RETENTION`; on any failure the partial file is removed and the export fails with an
  ``error_code`` and ``error`` saying why (fail-closed: no partial file is ever served). A
  message deleted while the export runs is left out.
* :func:`expire` (job ``exports.expire``, scheduled at ``expires_at``) deletes the file and marks
  the export ``expired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
from jmapc.methods import EmailGet, MailboxGet
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import jobs, utc
from shipmail.config import Settings
from shipmail.db import repository
from shipmail.exports import archive
from shipmail.exports.models import ACTIVE, COMPLETED, EXPIRED, FAILED, PENDING, PROCESSING, MailboxExport
from shipmail.http.errors import NotFound, ServiceUnavailable, ShipmailError
from shipmail.http.signed import sign
from shipmail.ids import new_id
from shipmail.inbox.attachments import stream as stream_blob
from shipmail.jmap import email as jemail
from shipmail.jmap.request import Request
from shipmail.mailboxes.models import Mailbox
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.exports")

#: How long a completed export's file is kept.
RETENTION = timedelta(days=7)
#: Longest validity of a download URL.
DOWNLOAD_URL_SECONDS = 300
#: Messages listed per JMAP request (Email/query + Email/get).
PAGE = 256
#: Progress is committed after this many messages (and at the end).
PROGRESS_EVERY = 50
#: Small messages downloaded ahead of the one being written, and the largest size that counts as small.
PREFETCH = 8
PREFETCH_MAX_BYTES = 256 * 1024
#: Properties of each exported message.
MESSAGE_PROPERTIES = ["id", "blobId", "keywords", "receivedAt", "size"]

#: Attempts of an export that meets an unavailable mail server before it fails.
MAX_ATTEMPTS = 3
#: Seconds before such an export is tried again, times the attempt number.
RETRY_SECONDS = 15

JOB_RUN = "exports.run"
JOB_EXPIRE = "exports.expire"


def exports_dir(settings: Settings) -> Path:
    return settings.data_dir / "exports"


def file_path(settings: Settings, export_id: str) -> Path:
    """Where the finished ZIP of ``export_id`` is kept."""
    return exports_dir(settings) / f"{export_id}.zip"


def _partial_path(settings: Settings, export_id: str) -> Path:
    return exports_dir(settings) / f"{export_id}.zip.partial"


def download_path(mailbox_id: str, export_id: str) -> str:
    """The path (under ``/v1``) of the download operation."""
    return f"/v1/mailboxes/{mailbox_id}/exports/{export_id}/download"


def download_url(settings: Settings, row: MailboxExport) -> tuple[str | None, datetime | None]:
    """A presigned download URL of a completed export and its expiry (at most
    :data:`DOWNLOAD_URL_SECONDS` from now, never beyond ``expires_at``); (None, None) otherwise."""
    if row.status != COMPLETED or row.expires_at is None:
        return None, None
    until = min(utc.now() + timedelta(seconds=DOWNLOAD_URL_SECONDS), row.expires_at)
    expires = int(until.timestamp())
    return sign(settings.secret_key, "GET", download_path(row.mailbox_id, row.id), expires), datetime.fromtimestamp(
        expires, UTC
    )


# ---------------------------------------------------------------------------------- requests


async def create(session: AsyncSession, mailbox: Mailbox) -> tuple[MailboxExport, bool]:
    """The mailbox's active export, or a new one queued with its job; (export, created)."""
    existing = (
        await session.exec(
            select(MailboxExport)
            .where(MailboxExport.mailbox_id == mailbox.id, col(MailboxExport.status).in_(ACTIVE))
            .order_by(col(MailboxExport.created_at).desc())
        )
    ).first()
    if existing is not None:
        return existing, False
    row = MailboxExport(
        id=new_id("mbexp"),
        organization_id=mailbox.organization_id,
        mailbox_id=mailbox.id,
        status=PENDING,
        created_at=utc.now(),
    )
    session.add(row)
    await jobs.enqueue(session, JOB_RUN, {"export_id": row.id}, key=f"export:{row.id}")
    await session.commit()
    await session.refresh(row)
    return row, True


async def get(session: AsyncSession, organization_id: str, mailbox_id: str, export_id: str) -> MailboxExport:
    """The export ``export_id`` of the mailbox; 404 for another mailbox's or organisation's."""
    row = await repository.get_owned(session, MailboxExport, organization_id, export_id)
    if row is None or row.mailbox_id != mailbox_id:
        raise NotFound(f"No export with id {export_id!r}.")
    return row


# --------------------------------------------------------------------------------------- job


async def _update(svc: Services, export_id: str, **values: Any) -> MailboxExport | None:
    async with svc.db.session() as session:
        row = await session.get(MailboxExport, export_id)
        if row is None:
            return None
        for name, value in values.items():
            setattr(row, name, value)
        session.add(row)
        await session.commit()
        await session.refresh(row)
        return row


async def run(svc: Services, export_id: str, *, attempt: int = MAX_ATTEMPTS) -> None:
    """Write the export ``export_id`` (see the module docstring). Idempotent: a repeated run of a
    pending or processing export starts over; a finished one is left alone. While ``attempt`` is
    below :data:`MAX_ATTEMPTS`, a mail server that does not answer (a timeout under load) makes
    the job run again after ``RETRY_SECONDS * attempt`` seconds, from the start; then the export
    fails with ``source_unavailable``."""
    async with svc.db.session() as session:
        row = await session.get(MailboxExport, export_id)
        if row is None or row.status not in ACTIVE:
            return
        mailbox = await session.get(Mailbox, row.mailbox_id)
        address = mailbox.address if mailbox is not None else None
    partial = _partial_path(svc.settings, export_id)
    await _update(svc, export_id, status=PROCESSING, started_at=utc.now(), messages_done=0, error=None)
    try:
        if address is None:
            raise _Failure("source_unavailable", "The mailbox no longer exists.")
        partial.parent.mkdir(parents=True, exist_ok=True)

        async def progress(done: int, total: int) -> None:
            await _update(svc, export_id, messages_done=done, messages_total=total)

        stats = await write_archive(svc, address, partial, progress)
        final = file_path(svc.settings, export_id)
        os.replace(partial, final)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        if not isinstance(exc, Exception):  # the worker is stopping: run again later, from the start
            await _update(svc, export_id, status=PENDING, messages_done=0)
            raise
        if isinstance(exc, ServiceUnavailable) and attempt < MAX_ATTEMPTS:
            await _update(svc, export_id, status=PENDING, messages_done=0)
            raise jobs.Retry(after=RETRY_SECONDS * attempt, reason=exc.message) from None
        code, why = _explain(exc)
        logger.warning("export %s failed: %s", export_id, why)
        await _update(svc, export_id, status=FAILED, error_code=code, error=why, completed_at=utc.now())
        return
    done_at = utc.now()
    async with svc.db.session() as session:
        row = await session.get(MailboxExport, export_id)
        if row is None:
            final.unlink(missing_ok=True)
            return
        row.status = COMPLETED
        row.file_size = final.stat().st_size
        row.message_count = stats.messages
        row.folder_count = stats.folders
        row.messages_done = stats.messages
        row.messages_total = stats.messages
        row.completed_at = done_at
        row.expires_at = done_at + RETENTION
        session.add(row)
        await jobs.enqueue(
            session, JOB_EXPIRE, {"export_id": export_id}, key=f"export-expire:{export_id}", run_at=row.expires_at
        )
        await session.commit()


async def expire(svc: Services, export_id: str) -> None:
    """Delete the file of ``export_id`` and mark it expired (job ``exports.expire``; early runs
    reschedule themselves through the job queue)."""
    async with svc.db.session() as session:
        row = await session.get(MailboxExport, export_id)
        if row is None:
            file_path(svc.settings, export_id).unlink(missing_ok=True)
            return
        if row.status != COMPLETED:
            return
        if row.expires_at is not None and row.expires_at > utc.now():
            raise jobs.Retry(after=(row.expires_at - utc.now()).total_seconds(), reason="not yet expired")
        file_path(svc.settings, export_id).unlink(missing_ok=True)
        row.status = EXPIRED
        session.add(row)
        await session.commit()


class _Failure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _explain(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, _Failure):
        return exc.code, exc.message
    if isinstance(exc, ServiceUnavailable):
        return "source_unavailable", "The mail server could not be read: " + exc.message
    if isinstance(exc, ShipmailError):
        return "export_failed", exc.message[:400]
    if isinstance(exc, OSError):
        return "export_failed", f"Writing the export file failed: {exc.strerror or type(exc).__name__}."
    return "export_failed", f"The export failed ({type(exc).__name__})."


# ------------------------------------------------------------------------------------ writer


class Stats:
    def __init__(self) -> None:
        self.messages = 0
        self.folders = 0


def _zip_time(moment: datetime | None) -> tuple[int, int, int, int, int, int]:
    m = (moment or datetime(1980, 1, 1, tzinfo=UTC)).astimezone(UTC)
    if m.year < 1980:
        m = datetime(1980, 1, 1, tzinfo=UTC)
    if m.year > 2107:
        m = datetime(2107, 12, 31, tzinfo=UTC)
    return (m.year, m.month, m.day, m.hour, m.minute, m.second)


def _parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def folder_paths(listed: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[str]]]:
    """Every folder of a Mailbox/get ``list`` with its path of names, parents first (a folder
    whose parent is missing counts as top level)."""
    by_id = {str(m["id"]): m for m in listed}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for m in listed:
        parent = m.get("parentId")
        children.setdefault(parent if parent in by_id else None, []).append(m)
    out: list[tuple[dict[str, Any], list[str]]] = []

    def walk(parent: str | None, path: list[str]) -> None:
        for m in sorted(children.get(parent, []), key=lambda m: (m.get("sortOrder") or 0, str(m.get("name")))):
            here = [*path, str(m.get("name") or "")]
            out.append((m, here))
            walk(str(m["id"]), here)

    walk(None, [])
    return out


async def write_archive(
    svc: Services, address: str, target: Path, progress: Callable[[int, int], Any] | None = None
) -> Stats:
    """Write the whole mailbox ``address`` as an export ZIP at ``target`` (created or truncated).
    ``progress(done, total)`` is awaited every :data:`PROGRESS_EVERY` messages."""
    request = Request()
    call = request.add(MailboxGet(ids=None, properties=["id", "name", "parentId", "role", "sortOrder", "totalEmails"]))
    listed = (await svc.jmap.call(address, request)).get(call, what="folder listing")["list"]
    folders = folder_paths(listed)
    total = sum(int(m.get("totalEmails") or 0) for m, _ in folders)
    stats = Stats()
    stats.folders = len(folders)
    folder_entries: list[dict[str, Any]] = []
    with (
        open(target, "wb") as raw,
        zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf,
        tempfile.TemporaryFile(dir=target.parent) as entries,
    ):
        first_entry = True
        for index, (folder, path) in enumerate(folders):
            count = 0
            with tempfile.TemporaryFile(dir=target.parent) as mbox:
                position = 0
                while True:
                    page = Request()
                    query = page.add(
                        jemail.query(
                            {"inMailbox": str(folder["id"])},
                            [{"property": "receivedAt", "isAscending": True}, {"property": "id", "isAscending": True}],
                            limit=PAGE,
                            position=position,
                        )
                    )
                    got = page.add(EmailGet(ids=page.ref(query, "/ids"), properties=MESSAGE_PROPERTIES))
                    results = await svc.jmap.call(address, page)
                    ids = results.get(query, what="message listing").get("ids") or []
                    emails = results.get(got, what="message listing").get("list") or []
                    prefetched = _Prefetch(svc, address, emails)
                    try:
                        for number, email in enumerate(emails):
                            received = _parse_date(email.get("receivedAt"))
                            name = f"{archive.folder_dir(path)}/{count + 1:06d}.eml"
                            chunks = await prefetched.chunks(number)
                            written = None if chunks is None else await _write_message(chunks, zf, name, received, mbox)
                            if written is None:
                                continue
                            count += 1
                            stats.messages += 1
                            entry = {
                                "file": name,
                                "folder": index,
                                "email_id": str(email["id"]),
                                "keywords": sorted(jemail.keywords(email.get("keywords"))),
                                "received_at": email.get("receivedAt"),
                                "size": written,
                            }
                            entries.write((b"" if first_entry else b",\n") + json.dumps(entry).encode())
                            first_entry = False
                            if progress is not None and stats.messages % PROGRESS_EVERY == 0:
                                await progress(stats.messages, max(total, stats.messages))
                    finally:
                        await prefetched.close()
                    position += len(ids)
                    if len(ids) < PAGE:
                        break
                if count:
                    mbox.seek(0)
                    with zf.open(archive.mbox_name(path), "w", force_zip64=True) as out:
                        _copy_file(mbox, out)
            folder_entries.append(
                {
                    "path": path,
                    "role": folder.get("role"),
                    "dir": archive.folder_dir(path),
                    "mbox": archive.mbox_name(path) if count else None,
                    "messages": count,
                }
            )
        head = {
            "format": archive.FORMAT,
            "format_version": archive.FORMAT_VERSION,
            "mailbox": address,
            "exported_at": utc.now().isoformat().replace("+00:00", "Z"),
            "folders": folder_entries,
        }
        with zf.open(archive.MANIFEST, "w", force_zip64=True) as out:
            text = json.dumps(head, indent=1)
            out.write(text[: text.rindex("}")].rstrip().encode() + b',\n "messages": [\n')
            entries.seek(0)
            _copy_file(entries, out)
            out.write(b"\n ]\n}\n")
    if progress is not None:
        await progress(stats.messages, stats.messages)
    return stats


def _copy_file(source: IO[bytes], out: IO[bytes]) -> None:
    while chunk := source.read(1 << 20):
        out.write(chunk)


class _Prefetch:
    """The blobs of one page of messages: up to :data:`PREFETCH` small ones (at most
    :data:`PREFETCH_MAX_BYTES` each) downloaded ahead, concurrently, into memory (bounded:
    ``PREFETCH * PREFETCH_MAX_BYTES``); larger ones streamed in their turn. A download of one
    message is one HTTP round trip to the mail server, so overlapping them is what makes an export
    fast; only small messages are held whole."""

    def __init__(self, svc: Services, address: str, emails: list[dict[str, Any]]) -> None:
        self.svc, self.address, self.emails = svc, address, emails
        self.tasks: dict[int, asyncio.Task[bytes | None]] = {}
        self.next = 0

    async def close(self) -> None:
        """Cancel what was fetched ahead and not used (a failure part-way)."""
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()

    def _small(self, number: int) -> bool:
        return int(self.emails[number].get("size") or 0) <= PREFETCH_MAX_BYTES

    def _fill(self, current: int) -> None:
        self.next = max(self.next, current)
        while self.next < len(self.emails) and len(self.tasks) < PREFETCH:
            if self._small(self.next):
                self.tasks[self.next] = asyncio.ensure_future(self._whole(self.emails[self.next]))
            self.next += 1
            if self.next - current > 4 * PREFETCH:
                break

    async def _whole(self, email: dict[str, Any]) -> bytes | None:
        upstream = await _open(self.svc, self.address, email)
        if upstream is None:
            return None
        try:
            return b"".join([chunk async for chunk in stream_blob(upstream)])
        finally:
            await upstream.aclose()

    async def chunks(self, number: int) -> list[bytes] | _Stream | None:
        """Message ``number``'s bytes (a list of chunks, or a stream), None when it is gone."""
        self._fill(number)
        task = self.tasks.pop(number, None)
        try:
            if task is not None:
                data = await task
                return None if data is None else [data]
            upstream = await _open(self.svc, self.address, self.emails[number])
            return None if upstream is None else _Stream(upstream)
        except BaseException:
            for other in self.tasks.values():
                other.cancel()
            raise
        finally:
            self._fill(number + 1)


class _Stream:
    def __init__(self, upstream: httpx.Response) -> None:
        self.upstream = upstream


async def _open(svc: Services, address: str, email: dict[str, Any]) -> httpx.Response | None:
    """Start downloading a message's blob; None when it is gone (404)."""
    size = int(email.get("size") or 0)
    upstream = await svc.jmap.open_blob(address, str(email["blobId"]), content_type="message/rfc822", size=size)
    if upstream.status_code == 404:
        await upstream.aclose()
        return None
    if upstream.status_code != 200:
        status = upstream.status_code
        await upstream.aclose()
        raise ServiceUnavailable(f"the download of a message answered {status}")
    return upstream


async def _write_message(
    chunks: list[bytes] | _Stream, zf: zipfile.ZipFile, name: str, received: datetime | None, mbox: IO[bytes]
) -> int:
    """Write one message (its chunks, or streamed) into the ZIP entry ``name`` and the folder's
    mbox; the bytes written."""
    info = zipfile.ZipInfo(name, date_time=_zip_time(received))
    info.compress_type = zipfile.ZIP_DEFLATED
    quoter = archive.MboxQuoter()
    mbox_start = mbox.tell()
    mbox.write(archive.from_line(received))
    written = 0
    try:
        with zf.open(info, "w", force_zip64=True) as out:
            source = stream_blob(chunks.upstream) if isinstance(chunks, _Stream) else _each(chunks)
            async for chunk in source:
                out.write(chunk)
                mbox.write(quoter.feed(chunk))
                written += len(chunk)
    except BaseException:
        mbox.seek(mbox_start)
        mbox.truncate()
        if isinstance(chunks, _Stream):
            await chunks.upstream.aclose()
        raise
    mbox.write(quoter.close())
    return written


async def _each(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
