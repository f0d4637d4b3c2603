"""Staged attachments: ``POST /v1/mailboxes/{id}/staged-attachments`` (raw bytes, ``?filename``),
``POST /v1/mailboxes/{id}/staged-attachment-upload-tokens`` (a five-minute, single-use URL bound
to a declared name, type, size and SHA-256) and ``POST /v1/staged-attachment-uploads/{token}``
(the bytes through that URL, no API key). Source: Shipmail ``stageMailboxAttachment``,
``prepareStagedAttachmentUpload``, ``consumeStagedAttachmentUpload``.

Where the bytes are
    Uploaded as a blob into the sending mailbox's own JMAP account (RFC 8620 section 6.1): the
    mail server keeps them, counted in the mailbox's storage, and every service process sees them.
    The ``staged_attachments`` row (``sat_...``) names the blob and what it must be (size,
    SHA-256). A send reads the blob back (RFC 8620 section 6.2) and checks its SHA-256 before the
    bytes go into the message; a scheduled message holds its attachments in its draft, so a staged
    id expiring afterwards does not matter.

Who may use a staged id
    The API key that staged it (or prepared its upload), for sends from the same mailbox of the
    same organisation, until ``expires_at`` (24 hours). Anything else is "no such staged
    attachment" (404): another organisation's id is indistinguishable from an unknown one.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request as HttpRequest

from shipmail import ids as public_ids
from shipmail.http.errors import NotFound, ServiceUnavailable, ValidationFailed, detail
from shipmail.http.routing import stream_body_to
from shipmail.mailboxes.models import Mailbox
from shipmail.messages import compose
from shipmail.messages.models import StagedAttachmentRow, StagedAttachmentUploadRow
from shipmail.messages.schemas import (
    MAX_STAGED_BYTES,
    PrepareStagedAttachmentUploadRequest,
    StagedAttachment,
    StagedAttachmentUpload,
)
from shipmail.runtime import Services
from shipmail.sandbox.service import Problems, check_header_text
from shipmail.utc import now as utcnow

PREFIX = "sat"
#: How long a staged attachment may be used, and a prepared upload URL works.
LIFETIME = timedelta(hours=24)
UPLOAD_URL_LIFETIME = timedelta(minutes=5)
#: The path of a prepared upload (under ``/v1``).
UPLOAD_PATH = "/staged-attachment-uploads/{token}"


def render(row: StagedAttachmentRow) -> StagedAttachment:
    return StagedAttachment(
        id=row.id,
        mailbox_id=row.mailbox_id,
        filename=row.filename,
        content_type=row.content_type,
        size=row.size,
        sha256=row.sha256,
        expires_at=row.expires_at,
    )


def _checked(filename: str, content_type: str | None) -> tuple[str, str]:
    """(filename, MIME type); 422 for control characters in the name or a bad type."""
    problems = Problems("attachment")
    check_header_text(problems, "filename", filename)
    kind = compose.mime_type(content_type)
    if kind is None:
        problems.add("content_type", "invalid_content_type", "a MIME type is type/subtype")
    problems.raise_if_any()
    assert kind is not None
    return filename, kind


async def _read(request: HttpRequest, limit: int) -> bytes:
    chunks: list[bytes] = []
    await stream_body_to(request, chunks.append, limit)
    return b"".join(chunks)


async def _purge_expired(session: AsyncSession, now: datetime) -> None:
    """Forget staged rows and prepared uploads past their time (their blobs are the mail
    server's to collect: RFC 8620 section 6.1, unreferenced uploads)."""
    await session.exec(sa.delete(StagedAttachmentRow).where(col(StagedAttachmentRow.expires_at) < now))
    await session.exec(sa.delete(StagedAttachmentUploadRow).where(col(StagedAttachmentUploadRow.expires_at) < now))


async def _store(
    svc: Services,
    session: AsyncSession,
    row: Mailbox,
    key_id: str,
    filename: str,
    content_type: str,
    data: bytes,
) -> StagedAttachmentRow:
    """Upload ``data`` into ``row``'s account and add its staged row to ``session`` (uncommitted)."""
    blob_id = await svc.jmap.upload(row.address, data, content_type)
    now = utcnow()
    staged = StagedAttachmentRow(
        id=public_ids.new_id(PREFIX),
        organization_id=row.organization_id,
        mailbox_id=row.id,
        key_id=key_id,
        filename=filename,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        blob_id=blob_id,
        expires_at=now + LIFETIME,
        created_at=now,
    )
    session.add(staged)
    return staged


async def stage(
    svc: Services, session: AsyncSession, row: Mailbox, key_id: str, filename: str, request: HttpRequest
) -> StagedAttachment:
    """Stage the request body (1 byte to 25 MiB; its ``Content-Type`` is the attachment's type)
    for sends from ``row`` by API key ``key_id``. 413 over 25 MiB, 422 empty or a bad name/type,
    503 when the mail server cannot store it."""
    name, kind = _checked(filename, request.headers.get("content-type"))
    data = await _read(request, MAX_STAGED_BYTES)
    if not data:
        raise ValidationFailed("The attachment is empty.", details=[detail("body", "empty", "at least 1 byte")])
    await _purge_expired(session, utcnow())
    staged = await _store(svc, session, row, key_id, name, kind, data)
    await session.commit()
    return render(staged)


async def prepare(
    svc: Services,
    session: AsyncSession,
    row: Mailbox,
    key_id: str,
    body: PrepareStagedAttachmentUploadRequest,
    base_url: str,
) -> StagedAttachmentUpload:
    """A single-use upload URL valid for five minutes, for exactly ``body.size`` bytes whose
    SHA-256 is ``body.sha256``. Only a hash of the URL's token is stored."""
    name, kind = _checked(body.filename, body.content_type)
    token = secrets.token_urlsafe(32)
    now = utcnow()
    upload = StagedAttachmentUploadRow(
        token_hash=hashlib.sha256(token.encode()).hexdigest(),
        organization_id=row.organization_id,
        mailbox_id=row.id,
        key_id=key_id,
        filename=name,
        content_type=kind,
        size=body.size,
        sha256=body.sha256,
        expires_at=now + UPLOAD_URL_LIFETIME,
    )
    await _purge_expired(session, now)
    session.add(upload)
    await session.commit()
    return StagedAttachmentUpload(
        mailbox_id=row.id,
        filename=name,
        content_type=kind,
        size=body.size,
        sha256=body.sha256,
        upload_url=base_url.rstrip("/") + "/v1" + UPLOAD_PATH.format(token=token),
        expires_at=upload.expires_at,
    )


async def consume(svc: Services, session: AsyncSession, token: str, request: HttpRequest) -> StagedAttachment:
    """Stage the bytes of the prepared upload ``token`` and consume the token. 404: unknown,
    used or expired token (or its mailbox is gone); 413: more bytes than declared; 422: fewer,
    or a different SHA-256 (the token stays usable until it expires)."""
    token_hash = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    upload = await session.get(StagedAttachmentUploadRow, token_hash)
    if upload is None or upload.expires_at <= utcnow():
        raise NotFound("No upload at this URL (it was used, or it expired).")
    row = await session.get(Mailbox, upload.mailbox_id)
    if row is None or row.organization_id != upload.organization_id:
        raise NotFound("No upload at this URL (its mailbox is gone).")
    data = await _read(request, upload.size)
    if len(data) != upload.size or hashlib.sha256(data).hexdigest() != upload.sha256:
        raise ValidationFailed(
            "The bytes are not the ones declared.",
            details=[detail("body", "mismatch", f"expected {upload.size} bytes with SHA-256 {upload.sha256}")],
        )
    staged = await _store(svc, session, row, upload.key_id, upload.filename, upload.content_type, data)
    gone = await session.exec(
        sa.delete(StagedAttachmentUploadRow).where(col(StagedAttachmentUploadRow.token_hash) == token_hash)
    )
    if gone.rowcount != 1:  # another request consumed it meanwhile
        await session.rollback()
        raise NotFound("No upload at this URL (it was used, or it expired).")
    await session.commit()
    return render(staged)


async def resolve(
    svc: Services, session: AsyncSession, row: Mailbox, key_id: str | None, staged_ids: list[str]
) -> list[compose.Attachment]:
    """The attachments named by ``staged_ids`` for a send from ``row`` by API key ``key_id``, in
    order, their bytes read back from the mail server and checked against their SHA-256. 404
    for an id that is not usable (unknown, expired, another key's, organisation's or
    mailbox's); 503 when the mail server cannot give the bytes."""
    if not staged_ids:
        return []
    found = {
        r.id: r
        for r in (
            await session.exec(select(StagedAttachmentRow).where(col(StagedAttachmentRow.id).in_(staged_ids)))
        ).all()
    }
    now = utcnow()
    out: list[compose.Attachment] = []
    for staged_id in staged_ids:
        staged = found.get(staged_id)
        if (
            staged is None
            or staged.organization_id != row.organization_id
            or staged.mailbox_id != row.id
            or (key_id is not None and staged.key_id != key_id)
            or staged.expires_at <= now
        ):
            raise NotFound(
                f"No staged attachment with id {staged_id!r} for this mailbox (unknown, expired, or another key's)."
            )
        data = await _download(svc, row.address, staged)
        out.append(compose.Attachment(filename=staged.filename, content_type=staged.content_type, data=data))
    return out


async def _download(svc: Services, address: str, staged: StagedAttachmentRow) -> bytes:
    response = await svc.jmap.open_blob(address, staged.blob_id, content_type=staged.content_type, size=staged.size)
    try:
        if response.status_code == 404:
            raise NotFound(f"The staged attachment {staged.id!r} is no longer stored; stage it again.")
        if response.status_code != 200:
            raise ServiceUnavailable(f"The mail server answered {response.status_code} for a staged attachment.")
        data = await response.aread()
    finally:
        await response.aclose()
    if hashlib.sha256(data).hexdigest() != staged.sha256:
        raise ServiceUnavailable(f"The mail server returned other bytes for the staged attachment {staged.id!r}.")
    return data
