"""Attachment downloads: a blob of a mailbox's mail, streamed from the JMAP server.

Source: Shipmail ``GET /v1/mailboxes/{id}/inbox/attachments?blob_id=...&name=...``
(``downloadMailboxInboxAttachment``; ``message_id`` and ``part_id`` name the part, as the
``download_path`` of every body part and attachment does) and
``GET /v1/mailboxes/{id}/inbox/messages/{message_id}/raw``; JMAP blob download (RFC 8620 section
6.2) and Blob/lookup (RFC 9404; Cyrus 3.6 offers it as ``https://cyrusimap.org/ns/jmap/blob``).

* :func:`locate`: with a message (and part) id, one Email/get of the message's body structure
  gives the part's media type, charset, name and size (the part's own, never the client's); with
  the blob id alone (identical bytes share one blob id across messages, so a blob has no one type
  or name) the type is the client's ``type`` or application/octet-stream, the name none, and one
  JMAP request (Blob/lookup, then Email/get) answers 404 for a blob no message of this mailbox
  holds. :func:`locate_message`: the whole message's blob, ``message/rfc822``, ``<subject>.eml``.
* :func:`open_upstream`: starts the download (unread httpx response; 404/503 mapped). The download
  URL carries a fixed name (:data:`shipmail.jmap.client.DOWNLOAD_NAME`), never the client's.
* HTTP semantics are pure functions: :func:`etag_matches` (If-None-Match, weak comparison),
  :func:`parse_range` (one ``bytes=`` range, RFC 9110 section 14.1.2), :func:`content_disposition`
  (RFC 6266 with an ASCII ``filename`` and a UTF-8 ``filename*``, RFC 8187).
* :func:`stream`: yields the upstream's bytes (skipping and cutting for a range) without buffering
  and closes the upstream in ``finally``. Cyrus 3.6 answers downloads with ``Accept-Ranges:
  none`` and ignores ``Range`` and ``If-None-Match``, so ranges are cut from the full stream here.

Blob ids are content-addressed (Cyrus: ``G`` + SHA-1 of the decoded bytes), so the blob id is a
strong ETag.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from jmapc.methods import EmailGet

from shipmail.http.errors import NotFound, ServiceUnavailable, ValidationFailed, detail
from shipmail.jmap import email as jemail
from shipmail.jmap import ids
from shipmail.jmap.blob import MATCHED_EMAIL_IDS, BlobLookup, blob_capability
from shipmail.jmap.request import Request
from shipmail.mailboxes.models import Mailbox
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.inbox.attachments")

DEFAULT_NAME = "attachment"
OCTET_STREAM = "application/octet-stream"
#: Media types of a whole message as a part: downloaded as ``*.eml`` when nameless.
MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
#: RFC 6838 section 4.2 ``restricted-name``: starts with a letter or digit, at most 127 characters.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"^{_RESTRICTED_NAME}/{_RESTRICTED_NAME}$")
_CHARSET = re.compile(rf"^{_TOKEN}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RANGE = re.compile(r"^\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class BlobPart:
    """The body part (or whole message) a blob id names in this mailbox."""

    blob_id: str
    media_type: str
    charset: str | None
    name: str | None
    size: int

    @property
    def content_type(self) -> str:
        """``Content-Type`` value: the part's type, with its charset for text types."""
        if self.charset and self.media_type.startswith("text/"):
            return f"{self.media_type}; charset={self.charset}"
        return self.media_type


class RangeNotSatisfiable(Exception):
    """The ``Range`` asks for bytes the representation does not have (416)."""


def _safe_type(value: Any) -> str:
    """The part's media type when it is an RFC 6838 ``type/subtype`` (so neither half is a dot
    segment in the download URL), else application/octet-stream."""
    text = str(value or "").strip().lower()
    return text if _MEDIA_TYPE.match(text) else OCTET_STREAM


def _safe_charset(value: Any) -> str | None:
    text = str(value or "").strip()
    return text if text and _CHARSET.match(text) else None


def _eml_name(media_type: str, name: str | None) -> str | None:
    """A nameless message part's file name: ``attachment.eml``."""
    if name is None and media_type in MESSAGE_TYPES:
        return f"{DEFAULT_NAME}.eml"
    return name


def _from_part(blob_id: str, part: dict[str, Any]) -> BlobPart:
    media_type = _safe_type(part.get("type"))
    name = part.get("name") if isinstance(part.get("name"), str) else None
    return BlobPart(
        blob_id=blob_id,
        media_type=media_type,
        charset=_safe_charset(part.get("charset")),
        name=_eml_name(media_type, name),
        size=int(part.get("size") or 0),
    )


def _not_found(blob_id: str) -> NotFound:
    return NotFound(f"No attachment with blob_id {blob_id!r} in this mailbox.")


async def locate(
    svc: Services,
    row: Mailbox,
    blob_id: str,
    *,
    email_id: str | None = None,
    part_id: str | None = None,
    media_type: str | None = None,
) -> BlobPart:
    """The part of ``row``'s mail that ``blob_id`` names; 404 when no message holds it.

    With ``email_id`` (and ``part_id``): that message's part (its first part holding the blob
    without ``part_id``): its media type, charset, name and size; one Email/get of the message's
    ``bodyStructure``; 404 when the message has no such part or the part another blob. A message's
    own blob (the whole RFC 5322 message) is ``message/rfc822``.

    Without: identical bytes share one blob id across messages (Cyrus: ``G`` + SHA-1), so the blob
    says nothing about a type or name: ``media_type`` (default application/octet-stream), no name.
    One JMAP request (Blob/lookup of the Emails holding the blob, Email/get of their structure for
    the size) answers 404 for a blob no message of the mailbox holds. Without a Blob/lookup
    capability the download itself answers 404 for blobs the account does not have.
    """
    if email_id is not None:
        return await _locate_in(svc, row, blob_id, email_id, part_id)
    served = media_type.lower() if media_type and _MEDIA_TYPE.match(media_type) else OCTET_STREAM
    session = await svc.jmap.session(row.address)
    urn = blob_capability(session.capabilities)
    if urn is None:
        return BlobPart(blob_id=blob_id, media_type=served, charset=None, name=None, size=-1)
    request = Request(capabilities=(urn,))
    lookup = request.add(BlobLookup(type_names=["Email"], ids=[blob_id]))
    get = request.add(
        EmailGet(
            ids=request.ref(lookup, MATCHED_EMAIL_IDS),
            properties=jemail.STRUCTURE_PROPERTIES,
            body_properties=jemail.STRUCTURE_BODY_PROPERTIES,
        )
    )
    results = await svc.jmap.call(row.address, request)
    emails = results.get(get, what="attachment lookup").get("list") or []
    for email in emails:
        if email.get("blobId") == blob_id:
            size = int(email.get("size") or 0)
        else:
            part = jemail.find_part(email.get("bodyStructure") or {}, blob_id)
            if part is None:
                continue
            size = int(part.get("size") or 0)
        return BlobPart(blob_id=blob_id, media_type=served, charset=None, name=None, size=size)
    raise _not_found(blob_id)


async def _locate_in(svc: Services, row: Mailbox, blob_id: str, email_id: str, part_id: str | None) -> BlobPart:
    request = Request()
    get = request.add(
        EmailGet(
            ids=[email_id],
            properties=jemail.STRUCTURE_PROPERTIES,
            body_properties=jemail.STRUCTURE_BODY_PROPERTIES,
        )
    )
    results = await svc.jmap.call(row.address, request)
    emails = results.get(get, what="attachment lookup").get("list") or []
    if not emails:
        raise _not_found(blob_id)
    email = emails[0]
    structure = email.get("bodyStructure") or {}
    if part_id is not None:
        part = jemail.find_part_id(structure, part_id)
        if part is None or part.get("blobId") != blob_id:
            raise _not_found(blob_id)
        return _from_part(blob_id, part)
    if email.get("blobId") == blob_id:
        return BlobPart(
            blob_id=blob_id, media_type="message/rfc822", charset=None, name=None, size=int(email.get("size") or 0)
        )
    found = jemail.find_part(structure, blob_id)
    if found is None:
        raise _not_found(blob_id)
    return _from_part(blob_id, found)


async def locate_message(svc: Services, row: Mailbox, email_id: str) -> BlobPart:
    """The whole RFC 5322 message ``email_id`` (its blob, ``message/rfc822``), named
    ``<subject>.eml`` (``<eml_ id>.eml`` without a subject); 404 when absent. One Email/get."""
    request = Request()
    get = request.add(EmailGet(ids=[email_id], properties=["id", "blobId", "size", "subject"]))
    results = await svc.jmap.call(row.address, request)
    emails = results.get(get, what="message").get("list") or []
    if not emails or not emails[0].get("blobId"):
        raise NotFound(f"No message with id {ids.to_wire(ids.EMAIL, email_id)!r}.")
    email = emails[0]
    subject = " ".join(str(email.get("subject") or "").split())[:200].strip()
    return BlobPart(
        blob_id=str(email["blobId"]),
        media_type="message/rfc822",
        charset=None,
        name=f"{subject or ids.to_wire(ids.EMAIL, email_id)}.eml",
        size=int(email.get("size") or 0),
    )


def check_name(name: str | None) -> str | None:
    """``name`` as given; 422 for control characters (they could split the response headers)."""
    if name is not None and _CONTROL.search(name):
        raise ValidationFailed(
            "The name must not contain control characters.",
            details=[detail("name", "control_characters", "control characters are not allowed")],
        )
    return name


def _clean_filename(name: str) -> str:
    name = _CONTROL.sub("", name)
    name = name.replace("/", "_").replace("\\", "_").strip().strip(".")
    return name[:255] or DEFAULT_NAME


def content_disposition(name: str) -> str:
    """``attachment; filename="<ASCII>"`` plus ``filename*=UTF-8''<pct-encoded>`` (RFC 6266,
    RFC 8187) when the name is not plain ASCII. Path separators and control characters go."""
    clean = _clean_filename(name)
    ascii_name = unicodedata.normalize("NFKD", clean).encode("ascii", "ignore").decode("ascii")
    ascii_name = re.sub(r"[^A-Za-z0-9!#$&+.^_`{}~ ()\[\],;=@-]", "_", ascii_name).strip() or DEFAULT_NAME
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != clean:
        value += f"; filename*=UTF-8''{quote(clean, safe='')}"
    return value


def etag_for(blob_id: str) -> str:
    """The strong ETag of a blob: its (content-addressed) id, quoted."""
    return f'"{blob_id}"'


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` value matches ``etag`` (``*`` or weak comparison,
    RFC 9110 section 13.1.2)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(","))


def _digits_key(digits: str) -> tuple[int, str]:
    """A sort key of ASCII decimal ``digits`` that orders them by value, however many there are."""
    significant = digits.lstrip("0") or "0"
    return len(significant), significant


def _at_most(digits: str, cap: int) -> int:
    """``min(int(digits), cap)`` for ASCII decimal ``digits`` of any length: Python's ``int()``
    refuses more than 4,300 digits (``ValueError``), so a number longer than ``cap`` is ``cap``
    without being converted."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(cap)):
        return cap
    return min(int(significant), cap)


def parse_range(
    header: str | None, size: int, *, if_range: str | None = None, etag: str = ""
) -> tuple[int, int] | None:
    """The ``(first, last)`` byte positions (inclusive) a ``Range`` header asks for, or None to
    send everything (no header, another unit, several ranges, bad syntax, or an ``If-Range`` that
    does not match ``etag``). Raises :class:`RangeNotSatisfiable` (416) for a well-formed range
    outside ``size`` bytes.

    RFC 9110 section 14.1.1: positions are ``1*DIGIT`` with no upper bound, so a position of any
    length is well-formed (never an int conversion of more digits than Python allows). Section
    14.1.2: a first-pos at or beyond the length is unsatisfiable (416, section 15.5.17, with
    ``Content-Range: bytes */<size>``); a last-pos at or beyond it means the last byte; a suffix
    longer than the representation means all of it; a suffix of 0 is unsatisfiable. Section 14.2:
    a ranges-specifier that is invalid (last-pos below first-pos) or that this server does not
    serve (several ranges, another unit) is ignored: the whole representation, 200.
    """
    if header is None or size < 0:
        return None
    if if_range is not None and if_range.strip() != etag:
        return None  # If-Range with another validator or a date: the full representation
    match = _RANGE.match(header)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # suffix range: the last N bytes
        suffix = _at_most(last_text, size)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable()
        return size - suffix, size - 1
    if last_text and _digits_key(last_text) < _digits_key(first_text):
        return None  # invalid: ignore the header
    first = _at_most(first_text, size)
    if first >= size:
        raise RangeNotSatisfiable()
    last = _at_most(last_text, size - 1) if last_text else size - 1
    return first, last


async def open_upstream(svc: Services, row: Mailbox, part: BlobPart) -> httpx.Response:
    """Start the download of ``part`` (unread; the caller closes it). 404 when the server has no
    such blob for the account; 503 (Retry-After) when it is unavailable or answers otherwise.

    The download URL carries a fixed name and the part's media type (:func:`_safe_type`: never a
    dot segment); the client's file name only goes into :func:`content_disposition`."""
    upstream = await svc.jmap.open_blob(
        row.address,
        part.blob_id,
        content_type=part.media_type,
        headers={"Accept-Encoding": "identity"},
        size=part.size,
    )
    if upstream.status_code == 200:
        return upstream
    status = upstream.status_code
    await upstream.aclose()
    if status == 404:
        raise _not_found(part.blob_id)
    logger.warning("blob download answered %d", status)
    raise ServiceUnavailable("The mail server could not serve the attachment; retry shortly.")


def upstream_size(upstream: httpx.Response, part: BlobPart) -> int:
    """The byte count the stream will carry: the upstream's Content-Length, else the part's size
    (-1: unknown). A compressed upstream has no usable length."""
    encoding = upstream.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return -1
    declared = upstream.headers.get("content-length", "").strip()
    if declared.isascii() and declared.isdigit() and len(declared) <= 18:
        return int(declared)
    return part.size


async def stream(upstream: httpx.Response, start: int = 0, length: int | None = None) -> AsyncGenerator[bytes, None]:
    """The upstream's body from byte ``start``, at most ``length`` bytes, chunk by chunk as they
    arrive (memory stays at one network chunk). The upstream is closed when the generator ends,
    fails or is closed (client gone)."""
    encoding = upstream.headers.get("content-encoding", "identity").strip().lower()
    chunks = upstream.aiter_raw() if encoding in ("", "identity") else upstream.aiter_bytes()
    skipped = 0
    sent = 0
    try:
        async for chunk in chunks:
            if skipped < start:
                need = start - skipped
                if len(chunk) <= need:
                    skipped += len(chunk)
                    continue
                chunk = chunk[need:]
                skipped = start
            if length is not None:
                remaining = length - sent
                if len(chunk) > remaining:
                    chunk = chunk[:remaining]
            if chunk:
                sent += len(chunk)
                yield chunk
            if length is not None and sent >= length:
                break
        if length is not None and sent < length:
            logger.warning("blob stream ended after %d of %d bytes", sent, length)
    finally:
        await upstream.aclose()
