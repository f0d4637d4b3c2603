"""A mailbox's mail through JMAP (RFC 8621): messages and threads, rendered as Shipmail's wire models.

Source: Shipmail ``/v1/mailboxes/{id}/inbox/messages`` and ``/threads`` (:mod:`shipmail.inbox.routes`).
Every read is ONE JMAP request (Email/query with Email/get, Thread/get and Mailbox/get chained by
back-references); the system folders' ids come from the database
(:func:`shipmail.mailboxes.accounts.system_folders`, in the request's session). :func:`get_message`
is shared: the sandbox-inbound feature calls it to return the delivered message.

Paging the message list
    The list is sorted newest first, ``(receivedAt desc, id desc)``: a total order (Cyrus sorts by
    id when asked; receivedAt has whole seconds). The first page fixes the ``before`` cutoff (the
    snapshot); the cursor then carries the last message's ``(receivedAt, id)`` and the next page
    asks for ``receivedAt <= last`` starting right after that message (JMAP ``anchor`` with
    ``anchorOffset`` 1, RFC 8620 section 5.5: Cyrus skips what sorts at or before it, nothing is
    fetched twice). When that message has left the list meanwhile (``anchorNotFound``: read under
    ``not_keyword=$seen``, moved, deleted) the page is placed by its ``(receivedAt, id)`` instead:
    the ``k`` messages of its second up to it are fetched again and dropped. Either way a page
    neither repeats nor skips mail, even when earlier messages are read, moved or deleted while the
    client pages or new mail arrives. ``total`` is what the walk listed before plus what is left:
    the snapshot's count, stable while paging.

Paging the thread list
    Threads (Email/query ``collapseThreads``) are paged by position under the fixed snapshot: mail
    arriving later never shifts pages; a thread whose newest mail changes while paging may move.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import sqlalchemy as sa
from cachetools import LRUCache
from jmapc.methods import EmailGet, EmailSet, MailboxGet, ThreadGet
from pydantic import TypeAdapter
from sqlalchemy import update as sa_update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.aliases.models import MailboxAlias
from shipmail.db import repository
from shipmail.http.cursors import invalid_cursor
from shipmail.http.errors import Conflict, NotFound, ValidationFailed, detail
from shipmail.inbox import authentication, replystate, threadscan
from shipmail.inbox.models import InboxThreadState
from shipmail.inbox.preview import preview
from shipmail.inbox.rendering import DictRenderer
from shipmail.inbox.replies import reply_text
from shipmail.inbox.schemas import (
    InboxFullMessage,
    InboxListQuery,
    InboxMessage,
    InboxMessages,
    InboxThread,
    InboxThreadListQuery,
    InboxThreadReplyStateResult,
    InboxThreads,
)
from shipmail.jmap import email as jemail
from shipmail.jmap import ids
from shipmail.jmap import thread as jthread
from shipmail.jmap.errors import from_jmap
from shipmail.jmap.request import Call, Request, Results
from shipmail.mailboxes.accounts import system_folders
from shipmail.mailboxes.models import Mailbox
from shipmail.runtime import Services

#: The wire JSON of the reads from their data dicts (:mod:`shipmail.inbox.rendering`: the models'
#: own schemas, no model instances; the routes answer with these).
MESSAGE_JSON = DictRenderer(InboxFullMessage)
THREAD_JSON = DictRenderer(InboxThread)
MESSAGES_JSON = DictRenderer(InboxMessages)
THREADS_JSON = DictRenderer(InboxThreads)

KIND_MESSAGES = "inbox_messages"
KIND_THREADS = "inbox_threads"
KIND_REPLY_QUEUE = "inbox_reply_queue"

#: At most this many messages of a boundary second are fetched again to place the next page;
#: beyond it (a huge burst delivered within one second) the rest of that second is skipped by position.
MAX_REFETCH = 500

# ----------------------------------------------------------------------------- rendering
#
# The wire models are rendered from plain dicts, never built object by object: the thread reads
# validate them once per response (pydantic-core, one pass over the whole tree); the message list
# and one message are built in wire form (:func:`full_data`) and written by orjson. The same bytes
# on the wire (tests/unit/test_inbox_rendering.py). Measured on a page of 50 (in-process, warm):
# 2.8 ms -> 0.7 ms of CPU for building and writing the JSON.


def _addresses(raw: Any) -> list[dict[str, Any]] | None:
    """An address list (RFC 8621 EmailAddress) as :class:`InboxEmailHeader` data."""
    if raw is None:
        return None
    return [{"name": a.get("name"), "email": a.get("email")} for a in raw]


def download_path(mailbox_id: str, blob_id: str, message_id: str | None = None, part_id: str | None = None) -> str:
    """Where the API serves a body part (relative to the API base URL): the attachment download
    with the blob, and the message (``eml_...``) and part that name its type and file name.
    Identical bytes share one blob id across messages, so the blob alone does not say which
    part's type and name to serve."""
    query = "blob_id=" + _query_value(blob_id)
    if message_id is not None:
        query += "&message_id=" + _query_value(message_id)
    if part_id is not None:
        query += "&part_id=" + _query_value(part_id)
    return f"/mailboxes/{mailbox_id}/inbox/attachments?{query}"


#: What :func:`urllib.parse.quote_plus` leaves as it is.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _query_value(value: str) -> str:
    """``value`` as :func:`urllib.parse.urlencode` writes it (``quote_plus``), without its cost for
    the usual ids, which need no escaping (a page of 50 messages made ~650 of these)."""
    return value if _UNRESERVED.fullmatch(value) else quote_plus(value)


def _attachments(e: dict[str, Any]) -> list[dict[str, Any]]:
    """The raw ``attachments`` of ``e`` that can be downloaded (those with a blob id)."""
    return [a for a in e.get("attachments") or [] if a.get("blobId")]


def has_attachment(e: dict[str, Any]) -> bool:
    """Whether the raw Email ``e`` has an attachment: its RFC 8621 ``attachments`` list (section
    4.1.4) is not empty, when the Email carries that list; else the server's ``hasAttachment``
    (the ``$HasAttachment`` keyword the delivery script sets, :mod:`shipmail.delivery.script`)."""
    if "attachments" in e:
        return bool(_attachments(e))
    return bool(e.get("hasAttachment"))


def message_data(row: Mailbox, e: dict[str, Any]) -> dict[str, Any]:
    """A raw JMAP Email (``LIST_PROPERTIES``, or more) as :class:`InboxMessage` data (not
    validated). The preview of HTML-only mail is computed from its HTML when ``e`` has the text
    body's values (:func:`shipmail.inbox.preview.preview`)."""
    thread = ids.to_wire(ids.THREAD, e["threadId"])
    return {
        "id": ids.to_wire(ids.EMAIL, e["id"]),
        "thread_id": thread,
        "conversation_id": thread,
        "mailbox_id": row.id,
        "address": row.address,
        "folder_ids": [ids.to_wire(ids.FOLDER, m) for m in jemail.mailbox_ids(e)],
        "keywords": jemail.keywords(e.get("keywords")),
        "from": _addresses(e.get("from")),
        "to": _addresses(e.get("to")),
        "subject": e.get("subject"),
        "received_at": e["receivedAt"],
        "preview": preview(e),
        "has_attachment": has_attachment(e),
        "size": int(e.get("size") or 0),
    }


def render_message(row: Mailbox, e: dict[str, Any]) -> InboxMessage:
    """A raw JMAP Email (``LIST_PROPERTIES``) as an :class:`InboxMessage`."""
    return InboxMessage.model_validate(message_data(row, e))


def _part(row: Mailbox, message_id: str, p: dict[str, Any]) -> dict[str, Any]:
    """A raw EmailBodyPart of ``textBody``/``htmlBody`` as :class:`InboxBodyPart` data."""
    blob_id = p.get("blobId")
    part_id = str(p.get("partId"))
    return {
        "part_id": part_id,
        "type": p.get("type") or "text/plain",
        "charset": p.get("charset"),
        "size": p.get("size"),
        "blob_id": blob_id,
        "name": p.get("name"),
        "disposition": p.get("disposition"),
        "cid": p.get("cid"),
        "download_path": download_path(row.id, blob_id, message_id, part_id) if blob_id else None,
    }


def _headers(e: dict[str, Any], raw: bool) -> list[dict[str, str]]:
    """The header fields in message order: unfolded (RFC 5322 section 2.2.3) without the white
    space after the colon, or as the server holds them (``raw``)."""
    fields = e.get("headers") or []
    if raw:
        return [{"name": h["name"], "value": h["value"]} for h in fields]
    unfold = jemail.unfold  # only for a folded value: else it is just the strip
    return [{"name": h["name"], "value": unfold(v) if "\n" in (v := h["value"]) else v.lstrip(" \t")} for h in fields]


#: A date of the server's (RFC 3339, RFC 8621 ``UTCDate``/``Date``) already as the wire models
#: write a ``datetime`` back: whole seconds, ``Z`` for UTC, else a non-zero offset.
_WIRE_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-](?!00:00)\d\d:\d\d)")
_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


def wire_date(value: Any) -> Any:
    """``value`` (a server date string, or a ``datetime``) as the wire models write a ``datetime``
    field (``2024-05-01T12:00:00Z``, ``...+02:00``): the server's usual form as it is, anything
    else through pydantic (its ValidationError for what is not a date)."""
    if isinstance(value, str) and _WIRE_DATE.fullmatch(value):
        try:
            datetime.fromisoformat(value)  # a real calendar date and time
        except ValueError:
            pass
        else:
            return value
    return _DATETIME.dump_python(_DATETIME.validate_python(value), mode="json")


@dataclass(frozen=True, slots=True)
class _Fixed:
    """The wire form of what never changes in a message (RFC 8621 section 4.1: of an Email only
    ``mailboxIds`` and ``keywords`` change; ``blobId`` names its exact bytes): the fields from
    ``from`` to ``headers`` and from ``text_body`` to ``security``, in the model's order."""

    thread_id: str
    middle: dict[str, Any]  # from, to, ..., headers
    tail: dict[str, Any]  # text_body, html_body, attachments, reply_text, security
    weight: int  # approximate characters held, for the cache's bound


#: Weight of the :class:`_Fixed` entries :func:`full_data` keeps (characters of text plus an
#: allowance per header, part and entry; measured ~1.8 bytes of memory per unit: ~7 MB at most,
#: ~1,000 list items of the bench's mail): a listed page renders its immutable part once, not at
#: every listing (per 50-message page, in-process: ~1.8 ms the first time, ~0.2 ms after).
FIXED_CACHE_CHARS = 4 * 1024 * 1024
_fixed_cache: LRUCache[tuple[Any, ...], _Fixed] = LRUCache(maxsize=FIXED_CACHE_CHARS, getsizeof=lambda f: f.weight)


def _fixed(
    row: Mailbox, e: dict[str, Any], message_id: str, raw_headers: bool, authserv_ids: Collection[str]
) -> _Fixed:
    """The :class:`_Fixed` part of the raw Email ``e`` (see :func:`full_data`)."""
    headers = _headers(e, raw_headers)
    parts: dict[str, dict[str, Any]] = {}  # by partId: textBody and htmlBody share the parts of plain mail

    def part(p: dict[str, Any]) -> dict[str, Any]:
        key = str(p.get("partId"))
        made = parts.get(key)
        if made is None or made["blob_id"] != p.get("blobId"):
            made = parts[key] = _part(row, message_id, p)
        return made

    attachments = []
    for a in _attachments(e):
        blob_id = a["blobId"]
        part_id = str(a.get("partId"))
        attachments.append(
            {
                "part_id": part_id,
                "blob_id": blob_id,
                "name": a.get("name"),
                "content_type": a.get("type") or "application/octet-stream",
                "size": int(a.get("size") or 0),
                "disposition": a.get("disposition"),
                "cid": a.get("cid"),
                "download_path": download_path(row.id, blob_id, message_id, part_id),
            }
        )
    text_body = [part(p) for p in e.get("textBody") or []]
    html_body = [part(p) for p in e.get("htmlBody") or []]
    preview_text = preview(e)
    reply = reply_text(e)
    weight = 1024 + len(preview_text) + len(reply or "") + 96 * len(headers) + sum(len(h["value"]) for h in headers)
    weight += 256 * (len(text_body) + len(html_body) + len(attachments))
    middle = {
        "from": _addresses(e.get("from")),
        "to": _addresses(e.get("to")),
        "subject": e.get("subject"),
        "received_at": wire_date(e["receivedAt"]),
        "preview": preview_text,
        "has_attachment": bool(attachments) if "attachments" in e else bool(e.get("hasAttachment")),
        "size": int(e.get("size") or 0),
        "authentication_results": authentication.authentication_results(e.get("headers") or [], authserv_ids),
        "object": "inbox_message_full",
        "cc": _addresses(e.get("cc")),
        "bcc": _addresses(e.get("bcc")),
        "reply_to": _addresses(e.get("replyTo")),
        "sender": _addresses(e.get("sender")),
        "sent_at": None if e.get("sentAt") is None else wire_date(e["sentAt"]),
        "message_id": e.get("messageId"),
        "in_reply_to": e.get("inReplyTo"),
        "references": e.get("references"),
        "headers": headers,
    }
    tail = {
        "text_body": text_body,
        "html_body": html_body,
        "attachments": attachments,
        "reply_text": reply,
        "security": authentication.security(e.get("blobId")),
    }
    return _Fixed(thread_id=ids.to_wire(ids.THREAD, e["threadId"]), middle=middle, tail=tail, weight=weight)


def full_data(
    row: Mailbox, e: dict[str, Any], *, raw_headers: bool = False, authserv_ids: Collection[str] = ()
) -> dict[str, Any]:
    """A raw JMAP Email (``FULL_PROPERTIES``) as :class:`InboxFullMessage` data in wire form
    (:meth:`~shipmail.inbox.rendering.DictRenderer.wire_json`: every field in the model's order,
    defaults filled in, dates as the model writes them; not validated). ``authserv_ids``: the
    Authentication-Results authserv-ids to trust
    (:func:`shipmail.inbox.authentication.authentication_results`).

    What never changes in a message (everything but its folders and keywords, RFC 8621 section
    4.1) is rendered once and kept (:data:`FIXED_CACHE_CHARS`), keyed by the Email id, its blob,
    the mailbox, the header form, the trusted authserv-ids and the length of each body value
    the server sent (a list's bounded values and one message's full ones are different entries).
    The nested objects are shared with that cache: read them, never change them."""
    message_id = ids.to_wire(ids.EMAIL, e["id"])
    mailbox_id = row.id
    blob = e.get("blobId")
    values = e.get("bodyValues") or {}
    fixed: _Fixed | None = None
    key: tuple[Any, ...] | None = None
    if isinstance(blob, str):
        trusted = authserv_ids if isinstance(authserv_ids, frozenset) else frozenset(authserv_ids)
        lengths = tuple((k, len(v.get("value") or "")) for k, v in values.items())
        key = (e["id"], blob, mailbox_id, raw_headers, trusted, lengths)
        fixed = _fixed_cache.get(key)
    if fixed is None:
        fixed = _fixed(row, e, message_id, raw_headers, authserv_ids)
        if key is not None and fixed.weight < FIXED_CACHE_CHARS // 64:
            _fixed_cache[key] = fixed
    return {
        "id": message_id,
        "thread_id": fixed.thread_id,
        "conversation_id": fixed.thread_id,
        "mailbox_id": mailbox_id,
        "address": row.address,
        "folder_ids": [ids.to_wire(ids.FOLDER, m) for m in jemail.mailbox_ids(e)],
        "keywords": jemail.keywords(e.get("keywords")),
        **fixed.middle,
        "body_values": {
            k: {
                "value": v.get("value", ""),
                "is_encoding_problem": bool(v.get("isEncodingProblem")),
                "is_truncated": bool(v.get("isTruncated")),
            }
            for k, v in values.items()
        },
        **fixed.tail,
    }


def render_full(
    row: Mailbox, e: dict[str, Any], *, raw_headers: bool = False, authserv_ids: Collection[str] = ()
) -> InboxFullMessage:
    """A raw JMAP Email (``FULL_PROPERTIES``) as an :class:`InboxFullMessage`."""
    return InboxFullMessage.model_validate(full_data(row, e, raw_headers=raw_headers, authserv_ids=authserv_ids))


def _in_order(listed: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    by_id = {e["id"]: e for e in listed}
    return [by_id[i] for i in order if i in by_id]


# ----------------------------------------------------------------------------- one message


async def get_message(svc: Services, row: Mailbox, email_id: str, *, raw_headers: bool = False) -> InboxFullMessage:
    """The full message ``email_id`` (JMAP id, no ``eml_``) of mailbox ``row``; 404 when absent.
    Header values unfolded, or as stored with ``raw_headers``.

    One JMAP request (Email/get).
    """
    return InboxFullMessage.model_validate(await get_message_data(svc, row, email_id, raw_headers=raw_headers))


async def get_message_data(svc: Services, row: Mailbox, email_id: str, *, raw_headers: bool = False) -> dict[str, Any]:
    """:func:`get_message` as :class:`InboxFullMessage` data in wire form (not validated:
    :meth:`MESSAGE_JSON.wire_json <shipmail.inbox.rendering.DictRenderer.wire_json>`)."""
    request = Request()
    get = request.add(jemail.full_get([email_id]))
    results = await svc.jmap.call(row.address, request)
    listed = results.get(get, what="message").get("list") or []
    if not listed:
        raise NotFound(f"No message with id {ids.to_wire(ids.EMAIL, email_id)!r}.")
    return full_data(row, listed[0], raw_headers=raw_headers, authserv_ids=svc.settings.trusted_authserv_ids)


async def get_thread(
    svc: Services, session: AsyncSession, row: Mailbox, thread_id: str, *, raw_headers: bool = False
) -> InboxThread:
    """Thread ``thread_id`` (JMAP id) with its messages, oldest first, its reply state and latest
    inbound/outbound messages; 404 when absent.

    One JMAP request (Thread/get, Email/get of its emailIds by back-reference).
    """
    return InboxThread.model_validate(await get_thread_data(svc, session, row, thread_id, raw_headers=raw_headers))


async def get_thread_data(
    svc: Services, session: AsyncSession, row: Mailbox, thread_id: str, *, raw_headers: bool = False
) -> dict[str, Any]:
    """:func:`get_thread` as :class:`InboxThread` data (not validated: :data:`THREAD_JSON`)."""
    folders = await system_folders(svc, session, row)
    request = Request()
    thread = request.add(ThreadGet(ids=[thread_id]))
    emails = request.add(jemail.full_get(request.ref(thread, jthread.EMAIL_IDS)))
    results = await svc.jmap.call(row.address, request)
    threads = results.get(thread, what="thread").get("list") or []
    if not threads:
        raise NotFound(f"No thread with id {ids.to_wire(ids.THREAD, thread_id)!r}.")
    listed = results.get(emails, what="thread").get("list") or []
    found = _in_order(listed, jthread.email_ids(threads[0]))
    if not found:
        raise NotFound(f"No thread with id {ids.to_wire(ids.THREAD, thread_id)!r}.")
    c = replystate.classify(found, folders, await own_addresses(session, row))
    view = replystate.derive(c, (await stored_states(session, row, [thread_id])).get(thread_id))
    wire_id = ids.to_wire(ids.THREAD, thread_id)
    return {
        "mailbox_id": row.id,
        "address": row.address,
        "thread_id": wire_id,
        **_latest_fields(c, c.members[-1] if c.members else None),
        **replystate.view_data(view, wire_id),
        "data": [
            full_data(row, e, raw_headers=raw_headers, authserv_ids=svc.settings.trusted_authserv_ids) for e in found
        ],
    }


# ----------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class _Listing:
    """A list request resolved: JMAP filter conditions (without ``before``) and the cursor binding."""

    conditions: list[jemail.Filter]
    binding: dict[str, Any]
    custom_folder: str | None  # a JMAP Mailbox id to check for existence (not a system folder)


def _text(value: str | None) -> str | None:
    return value if value else None


def _iso(moment: datetime | None) -> str | None:
    return jemail.utc_date(moment) if moment is not None else None


def _resolve(row: Mailbox, folders: dict[str, str], q: InboxListQuery) -> _Listing:
    conditions: list[jemail.Filter] = []
    custom: str | None = None
    if q.folder_id is not None:
        folder = ids.from_wire(ids.FOLDER, q.folder_id)
        conditions.append({"inMailbox": folder})
        if folder not in folders.values():
            custom = folder
    elif q.folder_role == "starred":
        conditions.append({"hasKeyword": "$flagged", "inMailboxOtherThan": [folders["trash"], folders["junk"]]})
    elif q.folder_role is not None:
        conditions.append({"inMailbox": folders[q.folder_role]})
    if q.search_text:
        conditions.append({"text": q.search_text})
    # Substring matches on the decoded header (JMAP `header`: Cyrus matches case-insensitively
    # anywhere in the value); the `from`/`to`/`subject` conditions would match whole words only.
    for header, value in (("From", q.from_), ("To", q.to), ("Subject", q.subject)):
        if value:
            conditions.append({"header": [header, value]})
    if q.has_attachment is not None:
        conditions.append({"hasAttachment": q.has_attachment})
    if q.has_keyword is not None:
        conditions.append({"hasKeyword": q.has_keyword})
    if q.not_keyword is not None:
        conditions.append({"notKeyword": q.not_keyword})
    if q.after is not None:
        conditions.append({"after": jemail.received_at_or_after(q.after)})
    binding = {
        "m": row.id,
        "fi": q.folder_id,
        "fr": q.folder_role,
        "st": _text(q.search_text),
        "fm": _text(q.from_),
        "to": _text(q.to),
        "su": _text(q.subject),
        "ha": q.has_attachment,
        "hk": q.has_keyword,
        "nk": q.not_keyword,
        "af": _iso(q.after),
        "bf": _iso(q.before),
    }
    return _Listing(conditions=conditions, binding=binding, custom_folder=custom)


def _filter(conditions: list[jemail.Filter], before: datetime) -> jemail.Filter:
    """The conditions AND ``receivedAt < before``."""
    every: list[jemail.Filter] = [*conditions, {"before": jemail.received_before(before)}]
    if len(every) == 1:
        return every[0]
    return {"operator": "AND", "conditions": every}


def _snapshot(q: InboxListQuery) -> datetime:
    """The first page's cutoff (exclusive, a whole second): the request's ``before``, or the
    next whole second from now (mail received during the current second is listed)."""
    ceiling = utc.to_second(utc.now()) + timedelta(seconds=1)
    if q.before is not None:
        return min(utc.ceil_second(q.before), ceiling)
    return ceiling


def _folder_check(request: Request, listing: _Listing) -> Call | None:
    """Add a Mailbox/get of the listing's custom folder (to answer 404 for an unknown one)."""
    if listing.custom_folder is None:
        return None
    return request.add(MailboxGet(ids=[listing.custom_folder], properties=["id"]))


def _check_folder(results: Results, listing: _Listing, call: Call | None) -> None:
    if call is None or listing.custom_folder is None:
        return
    if not results.get(call, what="folder").get("list"):
        raise NotFound(f"No folder with id {ids.to_wire(ids.FOLDER, listing.custom_folder)!r}.")


# ----------------------------------------------------------------------------- message list


async def _page(
    svc: Services,
    row: Mailbox,
    listing: _Listing,
    before: datetime,
    *,
    limit: int,
    position: int,
    anchor: str | None,
    junk: str | None,
) -> tuple[Results, Call | None, Call, Call, Call | None]:
    """ONE JMAP request: the folder check, Email/query (``before``, newest first, ``limit`` from
    ``position``, or from just after ``anchor``), Email/get of its ids and Mailbox/get of the
    ``junk`` folder's ``totalEmails``; the results and calls."""
    request = Request()
    folder = _folder_check(request, listing)
    junk_call = request.add(MailboxGet(ids=[junk], properties=["totalEmails"])) if junk is not None else None
    method = jemail.query(
        _filter(listing.conditions, before), jemail.NEWEST_FIRST, position=position, limit=limit, calculate_total=True
    )
    if anchor is not None:
        method = replace(method, position=None, anchor=anchor, anchor_offset=1)
    query = request.add(method)
    listed = jemail.full_get(request.ref(query, "/ids"), max_body_value_bytes=jemail.LIST_MAX_BODY_VALUE_BYTES)
    get = request.add(listed)
    return await svc.jmap.call(row.address, request), folder, query, get, junk_call


async def list_messages(svc: Services, session: AsyncSession, row: Mailbox, q: InboxListQuery) -> InboxMessages:
    """One page of ``row``'s messages matching ``q``, newest first. One JMAP request (two when
    the previous page's last message has left the list since).

    422 for a cursor of other filters or a tampered one; 404 for an unknown ``folder_id``."""
    return InboxMessages.model_validate(await list_messages_data(svc, session, row, q))


async def list_messages_data(svc: Services, session: AsyncSession, row: Mailbox, q: InboxListQuery) -> dict[str, Any]:
    """:func:`list_messages` as :class:`InboxMessages` data in wire form (not validated:
    :meth:`MESSAGES_JSON.wire_json <shipmail.inbox.rendering.DictRenderer.wire_json>`)."""
    folders = await system_folders(svc, session, row)
    listing = _resolve(row, folders, q)

    last: tuple[str, str] | None = None  # (receivedAt, id) of the previous page's last message
    refetch = 0  # messages of that message's second up to it, fetched again to be dropped
    offset = 0  # messages listed on the previous pages
    if q.cursor:
        pos = svc.cursors.decode(q.cursor, KIND_MESSAGES, listing.binding)
        try:
            snapshot = datetime.fromisoformat(str(pos["s"]))
            last = (str(pos["r"]), str(pos["i"]))
            refetch, offset = int(pos["k"]), int(pos["o"])
            last_at = datetime.fromisoformat(last[0])
        except (KeyError, TypeError, ValueError):
            raise invalid_cursor() from None
        if refetch < 0 or offset < 0:
            raise invalid_cursor()
        page_before = last_at + timedelta(seconds=1)  # receivedAt <= the last one's
    else:
        snapshot = _snapshot(q)
        page_before = snapshot

    anchored = last is not None
    skip = 0
    if last is not None:
        # The page right after the previous page's last message (RFC 8620 section 5.5 anchor):
        # Cyrus places it; nothing is fetched twice.
        results, folder, query, get, junk = await _page(
            svc, row, listing, page_before, limit=q.limit, anchor=last[1], position=0, junk=folders.get("junk")
        )
        _check_folder(results, listing, folder)
        anchored = results.error_type(query) != "anchorNotFound"
    if not anchored:
        # The first page, or the previous page's last message left the list (read, moved or
        # deleted): place the page by that message's (receivedAt, id), fetching the messages of
        # its second up to it again, to be dropped (at most MAX_REFETCH; beyond, by position).
        skip = max(0, refetch - MAX_REFETCH)
        results, folder, query, get, junk = await _page(
            svc,
            row,
            listing,
            page_before,
            limit=q.limit + refetch - skip,
            anchor=None,
            position=skip,
            junk=folders.get("junk"),
        )
        _check_folder(results, listing, folder)
    found = results.get(query, what="message search")
    listed = results.get(get, what="message list").get("list") or []
    junk_total: int | None = None
    if junk is not None:
        junk_folder = results.get(junk, what="junk folder").get("list") or []
        junk_total = int(junk_folder[0].get("totalEmails") or 0) if junk_folder else None
    emails = _in_order(listed, found.get("ids") or [])

    kept = emails
    if anchored and last is not None:
        # What sorts at or before the anchor: its second's mail up to it (``receivedAt <= last``).
        dropped = int(found.get("position") or 0)
    else:
        # Drop what sorts at or before the previous page's last message (its second's earlier mail).
        dropped = skip
        if last is not None:
            kept = [e for e in emails if not (e["receivedAt"] == last[0] and e["id"] >= last[1])]
            dropped += len(emails) - len(kept)
    page = kept[: q.limit]
    remaining = int(found.get("total") or 0) - dropped  # from this page on
    has_more = remaining > len(page)
    # Stable while paging: what the walk listed before plus what is left (the snapshot's count
    # when nothing changes meanwhile).
    total = offset + remaining

    next_cursor = None
    if has_more and page:
        tail = page[-1]
        # Messages of the tail's second up to it (for a page placed without the anchor).
        before_window = dropped if anchored else skip
        same = before_window if last is not None and last[0] == tail["receivedAt"] else 0
        for e in emails:
            if e["receivedAt"] == tail["receivedAt"]:
                same += 1
            if e["id"] == tail["id"]:
                break
        next_cursor = svc.cursors.encode(
            KIND_MESSAGES,
            listing.binding,
            {
                "s": jemail.utc_date(snapshot),
                "r": tail["receivedAt"],
                "i": tail["id"],
                "k": same,
                "o": offset + len(page),
            },
        )
    elif has_more and last is not None:
        # Everything fetched sorted before the cursor (mail moved into the list within its
        # second): same place, fetch past what was dropped.
        next_cursor = svc.cursors.encode(
            KIND_MESSAGES,
            listing.binding,
            {"s": jemail.utc_date(snapshot), "r": last[0], "i": last[1], "k": dropped, "o": offset},
        )
    trusted = svc.settings.trusted_authserv_ids
    return {
        "object": "inbox_messages",
        "mailbox_id": row.id,
        "address": row.address,
        "data": [full_data(row, e, authserv_ids=trusted) for e in page],
        "junk_total": junk_total,
        "pagination": {
            "limit": q.limit,
            "total": total,
            "has_more": has_more,
            "next_cursor": next_cursor,
            "snapshot_at": wire_date(snapshot),
        },
    }


# ----------------------------------------------------------------------------- thread list


def _summary_data(
    row: Mailbox,
    latest: dict[str, Any],
    c: replystate.Classified,
    view: replystate.ReplyView,
) -> dict[str, Any]:
    """:class:`InboxThreadSummary` data (not validated) of the thread of ``latest`` (the newest
    message matching the filters), classified as ``c``, in reply state ``view``."""
    members = c.members or [latest]
    newest = members[-1]
    kept = {str(e["id"]) for e in c.messages}  # not drafts
    unread = sum(1 for e in members if str(e["id"]) in kept and not (e.get("keywords") or {}).get("$seen"))
    newest_from = newest.get("from") or []
    thread = ids.to_wire(ids.THREAD, latest["threadId"])
    return {
        "id": thread,
        "thread_id": thread,
        "subject": latest.get("subject"),
        "latest_from_address": newest_from[0].get("email") if newest_from else None,
        "message_count": len(members),
        "unread_count": unread,
        "first_message_at": members[0]["receivedAt"],
        "last_message_at": newest["receivedAt"],
        **_latest_fields(c, newest),
        **replystate.view_data(view, thread),
        "latest_message": message_data(row, latest),
    }


def _latest_fields(c: replystate.Classified, newest: dict[str, Any] | None) -> dict[str, Any]:
    li = c.inbound[-1] if c.inbound else None
    lo = c.outbound[-1] if c.outbound else None
    return {
        "latest_message_id": ids.to_wire(ids.EMAIL, newest["id"]) if newest else None,
        "latest_email_id": newest["id"] if newest else None,
        "latest_inbound_message_id": ids.to_wire(ids.EMAIL, li["id"]) if li else None,
        "latest_inbound_email_id": li["id"] if li else None,
        "latest_inbound_at": li["receivedAt"] if li else None,
        "latest_outbound_message_id": ids.to_wire(ids.EMAIL, lo["id"]) if lo else None,
        "latest_outbound_email_id": lo["id"] if lo else None,
        "latest_outbound_at": lo["receivedAt"] if lo else None,
    }


#: The mailbox's alias addresses (:func:`own_addresses`).
_ALIASES = sa.select(col(MailboxAlias.address)).where(col(MailboxAlias.mailbox_id) == sa.bindparam("m"))
#: How many thread ids one read of :func:`stored_states` asks for: the ids are padded to the
#: next of these sizes (repeating the last), so a few statements serve every count.
_STATE_BATCHES = (1, 8, 64, 256, 512)


@functools.cache
def _states_statement(size: int) -> tuple[sa.Select[Any], tuple[str, ...], tuple[str, ...]]:
    """The ``inbox_thread_states`` rows of mailbox ``:m`` among the thread ids ``:t0``..
    ``:t<size-1>``, the attribute of each column and the names of the thread id parameters."""
    table = InboxThreadState.__table__  # type: ignore[attr-defined]
    names = tuple(f"t{i}" for i in range(size))
    stmt = sa.select(*table.c).where(
        table.c.mailbox_id == sa.bindparam("m"), table.c.thread_id.in_([sa.bindparam(n) for n in names])
    )
    return stmt, tuple(c.key for c in table.c), names


async def own_addresses(session: AsyncSession, row: Mailbox) -> list[str]:
    """The mailbox's own addresses: its address and its aliases (mail From one of them is outbound)."""
    rows = await repository.point_rows(session, _ALIASES, {"m": row.id})
    if rows is not None:
        return [row.address, *(r[0] for r in rows)]
    aliases = (await session.exec(select(MailboxAlias.address).where(MailboxAlias.mailbox_id == row.id))).all()
    return [row.address, *aliases]


async def stored_states(session: AsyncSession, row: Mailbox, thread_ids: Iterable[str]) -> dict[str, InboxThreadState]:
    """What the user set on these threads (JMAP ids) of ``row``, by thread id (read without a
    thread hop when the session has not touched the database: :func:`repository.point_rows`;
    the objects are then not in the session)."""
    wanted = sorted(set(thread_ids))
    out: dict[str, InboxThreadState] = {}
    size = _STATE_BATCHES[-1]
    for i in range(0, len(wanted), size):
        chunk = wanted[i : i + size]
        batch = next(n for n in _STATE_BATCHES if n >= len(chunk))
        stmt, keys, names = _states_statement(batch)
        padded = chunk + [chunk[-1]] * (batch - len(chunk))
        params = {"m": row.id, **dict(zip(names, padded, strict=True))}
        found = await repository.point_rows(session, stmt, params)
        if found is None:
            break
        manager = sa.inspect(InboxThreadState).class_manager
        for values in found:
            obj = manager.new_instance()  # as the ORM's loader: no __init__, no validation
            obj.__dict__.update(zip(keys, values, strict=True))
            out[obj.thread_id] = obj
    else:
        return out
    out = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        rows = await session.exec(
            select(InboxThreadState)
            .where(InboxThreadState.mailbox_id == row.id)
            .where(col(InboxThreadState.thread_id).in_(chunk))
        )
        out.update({r.thread_id: r for r in rows.all()})
    return out


@dataclass(frozen=True)
class ThreadState:
    """One thread's messages classified and its reply state."""

    classified: replystate.Classified
    view: replystate.ReplyView


async def thread_state(svc: Services, session: AsyncSession, row: Mailbox, thread_id: str) -> ThreadState:
    """The reply state of ``row``'s thread ``thread_id`` (JMAP id); 404 when absent. One JMAP
    request (Thread/get, Email/get of its members by back-reference)."""
    folders = await system_folders(svc, session, row)
    request = Request()
    thread = request.add(ThreadGet(ids=[thread_id]))
    members = request.add(EmailGet(ids=request.ref(thread, jthread.EMAIL_IDS), properties=replystate.MEMBER_PROPERTIES))
    results = await svc.jmap.call(row.address, request)
    listed = results.get(members, what="thread").get("list") or []
    if not results.get(thread, what="thread").get("list") or not listed:
        raise NotFound(f"No thread with id {ids.to_wire(ids.THREAD, thread_id)!r}.")
    c = replystate.classify(listed, folders, await own_addresses(session, row))
    stored = (await stored_states(session, row, [thread_id])).get(thread_id)
    return ThreadState(classified=c, view=replystate.derive(c, stored))


@dataclass(frozen=True)
class _Scanned:
    """A thread of the reply-queue scan: its newest matching message and reply state."""

    latest: dict[str, Any]
    classified: replystate.Classified
    view: replystate.ReplyView

    @property
    def thread_id(self) -> str:
        return str(self.latest["threadId"])

    @property
    def tie(self) -> str:
        """The tie-breaker of equal keys: the thread's newest message's id (as the default order's)."""
        members = self.classified.members
        return str(members[-1]["id"]) if members else str(self.latest["id"])

    def key(self, sort_key: str) -> str | None:
        if sort_key == "needs_reply_since":
            return self.view.needs_reply_since
        members = self.classified.members
        return str(members[-1]["receivedAt"]) if members else str(self.latest["receivedAt"])


def _ordered(items: list[_Scanned], sort_key: str, desc: bool) -> list[_Scanned]:
    """``items`` by (key, newest message id) in the direction asked, those without a key last."""
    keyed = [i for i in items if i.key(sort_key) is not None]
    unkeyed = [i for i in items if i.key(sort_key) is None]
    return sorted(keyed, key=lambda i: (i.key(sort_key) or "", i.tie), reverse=desc) + sorted(
        unkeyed, key=lambda i: i.tie, reverse=desc
    )


def _after(item: _Scanned, sort_key: str, desc: bool, last: tuple[str | None, str]) -> bool:
    """Whether ``item`` sorts after the cursor's ``(key, newest message id)`` (:func:`_ordered`)."""
    key, last_key = item.key(sort_key), last[0]
    if (key is None) != (last_key is None):
        return key is None
    here, there = (key or "", item.tie), (last_key or "", last[1])
    return here < there if desc else here > there


async def list_threads(svc: Services, session: AsyncSession, row: Mailbox, q: InboxThreadListQuery) -> InboxThreads:
    """One page of ``row``'s threads matching ``q``, with their reply states and the per-state
    ``summary`` counts.

    The reply state needs every message of a thread, so the list looks at the
    :data:`SCAN_THREADS` threads with the newest matching mail at once (one Email/query with
    ``collapseThreads``, one Thread/get, one Email/get of all their members, by back-reference:
    never a request per thread); the ``summary`` counts and the reply-queue views
    (``reply_state``, ``sort_by``, ``order``) cover those threads. The default view (newest
    matching message first, no ``reply_state``) is paged by position in the same ONE JMAP
    request; a reply-queue view is paged by its keys (``(key, newest message id)``, keyset) and takes a
    second request for the page's message summaries.

    422 for a cursor of other filters or a tampered one; 404 for an unknown ``folder_id``."""
    return InboxThreads.model_validate(await list_threads_data(svc, session, row, q))


async def list_threads_data(
    svc: Services, session: AsyncSession, row: Mailbox, q: InboxThreadListQuery
) -> dict[str, Any]:
    """:func:`list_threads` as :class:`InboxThreads` data (not validated: :data:`THREADS_JSON`)."""
    folders = await system_folders(svc, session, row)
    listing = _resolve(row, folders, q)
    sort_key, desc, wanted_state = q.sort_key, q.descending, q.state_filter
    queue = wanted_state is not None or sort_key is not None
    binding = {**listing.binding, "rs": wanted_state, "sb": sort_key, "ds": desc}
    kind = KIND_REPLY_QUEUE if queue else KIND_THREADS
    position, offset = 0, 0
    last: tuple[str | None, str] | None = None
    if q.cursor:
        pos = svc.cursors.decode(q.cursor, kind, binding)
        try:
            snapshot = datetime.fromisoformat(str(pos["s"]))
            if queue:
                last = (None if pos["k"] is None else str(pos["k"]), str(pos["t"]))
                offset = int(pos["o"])
            else:
                position = int(pos["p"])
        except (KeyError, TypeError, ValueError):
            raise invalid_cursor() from None
        if position < 0 or offset < 0:
            raise invalid_cursor()
    else:
        snapshot = _snapshot(q)
    snapshot_text = jemail.utc_date(snapshot)

    request = Request()
    folder = _folder_check(request, listing)
    scan = threadscan.ThreadScan(svc, row)
    scan.add(request, _filter(listing.conditions, snapshot))
    if not queue:
        query = request.add(
            jemail.query(
                _filter(listing.conditions, snapshot),
                jemail.NEWEST_FIRST,
                collapse_threads=True,
                position=position,
                limit=q.limit,
                calculate_total=True,
            )
        )
        latest_get = request.add(jemail.summary_get(request.ref(query, "/ids")))
        members_get = None
        if position + q.limit > threadscan.SCAN_THREADS:  # page threads beyond the scan's window
            threads = request.add(ThreadGet(ids=request.ref(latest_get, jemail.THREAD_IDS)))
            members_get = request.add(
                EmailGet(ids=request.ref(threads, jthread.EMAIL_IDS), properties=replystate.MEMBER_PROPERTIES)
            )
    results = await svc.jmap.call(row.address, request)
    _check_folder(results, listing, folder)

    own = await own_addresses(session, row)
    window = await scan.finish(results, folders, own)
    scanned_latest = window.latest
    beyond: dict[str, list[dict[str, Any]]] = {}
    page_latest: list[dict[str, Any]] = []
    if not queue:
        page_found = results.get(query, what="thread search")
        page_latest = _in_order(
            results.get(latest_get, what="thread list").get("list") or [], page_found.get("ids") or []
        )
        if members_get is not None:
            for e in results.get(members_get, what="thread list").get("list") or []:
                if e["threadId"] not in window.members:  # a page thread beyond the scan
                    beyond.setdefault(e["threadId"], []).append(e)
    stored = await stored_states(
        session, row, [e["threadId"] for e in scanned_latest] + [e["threadId"] for e in page_latest]
    )

    def state_of(latest: dict[str, Any]) -> _Scanned:
        thread_id = latest["threadId"]
        c, view = window.state(thread_id, beyond.get(thread_id) or [latest], folders, own, stored.get(thread_id))
        return _Scanned(latest=latest, classified=c, view=view)

    scanned = [state_of(e) for e in scanned_latest]
    total_threads = window.total
    summary: dict[str, int] = {"total": total_threads, **dict.fromkeys(replystate.REPLY_STATES, 0)}
    for item in scanned:
        summary[item.view.state] += 1

    next_cursor: str | None
    if queue:
        candidates = [i for i in scanned if wanted_state is None or i.view.state == wanted_state]
        ordered = _ordered(candidates, sort_key or "last_message_at", desc)
        if last is not None:
            ordered = [i for i in ordered if _after(i, sort_key or "last_message_at", desc, last)]
        page = ordered[: q.limit]
        has_more = len(ordered) > len(page)
        total = offset + len(ordered)
        details = await _summaries(svc, row, [i.latest["id"] for i in page])
        data = [_summary_data(row, details.get(i.latest["id"], i.latest), i.classified, i.view) for i in page]
        next_cursor = (
            svc.cursors.encode(
                kind,
                binding,
                {
                    "s": snapshot_text,
                    "k": page[-1].key(sort_key or "last_message_at"),
                    "t": page[-1].tie,
                    "o": offset + len(page),
                },
            )
            if has_more and page
            else None
        )
    else:
        total = int(page_found.get("total") or 0)
        items = [state_of(e) for e in page_latest]
        data = [_summary_data(row, i.latest, i.classified, i.view) for i in items]
        has_more = position + len(page_latest) < total and bool(page_latest)
        next_cursor = (
            svc.cursors.encode(kind, binding, {"s": snapshot_text, "p": position + len(page_latest)})
            if has_more
            else None
        )
    return {
        "mailbox_id": row.id,
        "address": row.address,
        "data": data,
        "summary": summary,
        "pagination": {
            "limit": q.limit,
            "total": total,
            "has_more": has_more,
            "next_cursor": next_cursor,
            "snapshot_at": snapshot,
        },
    }


async def _summaries(svc: Services, row: Mailbox, email_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Message summaries (:func:`~shipmail.jmap.email.summary_get`) of ``email_ids``, by id: one
    JMAP request (none for an empty page)."""
    if not email_ids:
        return {}
    request = Request()
    call = request.add(jemail.summary_get(email_ids))
    listed = (await svc.jmap.call(row.address, request)).get(call, what="thread list").get("list") or []
    return {str(e["id"]): e for e in listed}


# ----------------------------------------------------------------------------- writes


def _not_found(email_id: str) -> NotFound:
    return NotFound(f"No message with id {ids.to_wire(ids.EMAIL, email_id)!r}.")


def _set_result(results: Results, call: Call, email_id: str, *, what: str, folder: str | None = None) -> None:
    """Raise for the SetError of ``email_id`` in the Email/set result of ``call`` (RFC 8620
    section 5.3): 404 for an unknown message (or ``folder``), else the mapped error."""
    got = results.get(call, what=what)
    failed = (got.get("notUpdated") or {}).get(email_id) or (got.get("notDestroyed") or {}).get(email_id)
    if not failed:
        return
    if failed.get("type") == "notFound":
        raise _not_found(email_id)
    bad_folder = failed.get("type") == "invalidProperties" and "mailboxIds" in (failed.get("properties") or [])
    if folder is not None and bad_folder:
        raise NotFound(f"No folder with id {ids.to_wire(ids.FOLDER, folder)!r}.")
    raise from_jmap(failed, what=what)


async def _set(svc: Services, row: Mailbox, method: EmailSet) -> tuple[Results, Call]:
    """Send the one Email/set ``method``; its results and call."""
    request = Request()
    call = request.add(method)
    return await svc.jmap.call(row.address, request), call


def _state_mismatch(results: Results, call: Call) -> bool:
    """Whether ``call`` failed with ``stateMismatch`` (its ``ifInState`` was stale, RFC 8620 section 5.3)."""
    return results.error_type(call) == "stateMismatch"


async def update_flags(svc: Services, row: Mailbox, email_id: str, *, read: bool | None, starred: bool | None) -> None:
    """Set or clear ``$seen`` / ``$flagged`` (RFC 8621 section 4.1.1); 404 for an unknown message."""
    patch: dict[str, Any] = {}
    if read is not None:
        patch["keywords/$seen"] = True if read else None  # removing a keyword needs null
    if starred is not None:
        patch["keywords/$flagged"] = True if starred else None
    results, call = await _set(svc, row, EmailSet(update={email_id: patch}))
    _set_result(results, call, email_id, what="message update")


async def move(
    svc: Services,
    session: AsyncSession,
    row: Mailbox,
    email_id: str,
    *,
    target_role: str | None,
    target_folder_id: str | None,
    from_folder_id: str | None,
) -> None:
    """Put the message in exactly one folder; 404 for an unknown message or folder.

    With ``from_folder_id`` the message must be in that folder (409 otherwise): checked and
    moved under the same account state (``ifInState``), retried if other mail changed meanwhile.
    """
    folders = await system_folders(svc, session, row)
    if target_role is not None:
        target = folders[target_role]
    else:
        assert target_folder_id is not None
        target = ids.from_wire(ids.FOLDER, target_folder_id)
    source = ids.from_wire(ids.FOLDER, from_folder_id) if from_folder_id is not None else None
    update = {email_id: {"mailboxIds": {target: True}}}
    if source is None:
        results, call = await _set(svc, row, EmailSet(update=update))
        _set_result(results, call, email_id, what="message move", folder=target)
        return
    for _ in range(3):
        state, boxes = await _mailboxes_of(svc, row, email_id)
        if source not in boxes:
            raise Conflict(f"The message is not in folder {from_folder_id!r}.")
        results, call = await _set(svc, row, EmailSet(update=update, if_in_state=state))
        if _state_mismatch(results, call):
            continue
        _set_result(results, call, email_id, what="message move", folder=target)
        return
    raise Conflict("The mailbox changed while moving the message; retry.")


async def _mailboxes_of(svc: Services, row: Mailbox, email_id: str) -> tuple[str, set[str]]:
    """The account's Email state and the JMAP Mailbox ids holding ``email_id``; 404 when absent."""
    request = Request()
    get = request.add(EmailGet(ids=[email_id], properties=["mailboxIds"]))
    results = await svc.jmap.call(row.address, request)
    got = results.get(get, what="message")
    listed = got.get("list") or []
    if not listed:
        raise _not_found(email_id)
    return str(got.get("state")), set(jemail.mailbox_ids(listed[0]))


async def delete(svc: Services, session: AsyncSession, row: Mailbox, email_id: str) -> None:
    """Destroy the message for good: only from Trash or Junk (422 otherwise, as the reference
    answers); 404 when unknown.

    Cyrus reports unknown ids as destroyed, so the message is looked up first, and destroyed
    under that account state (``ifInState``), retried if other mail changed meanwhile.
    """
    folders = await system_folders(svc, session, row)
    allowed = {folders["trash"], folders["junk"]}
    for _ in range(3):
        state, boxes = await _mailboxes_of(svc, row, email_id)
        if not boxes or not boxes <= allowed:
            raise ValidationFailed(
                "Only messages in Trash or Junk can be deleted permanently; move the message to Trash first.",
                details=[detail("message_id", "not_in_trash", "the message is not in Trash or Junk")],
            )
        results, call = await _set(svc, row, EmailSet(destroy=[email_id], if_in_state=state))
        if _state_mismatch(results, call):
            await asyncio.sleep(0)
            continue
        _set_result(results, call, email_id, what="message deletion")
        return
    raise Conflict("The mailbox changed while deleting the message; retry.")


# ----------------------------------------------------------------------------- reply state


async def update_reply_state(
    svc: Services, session: AsyncSession, row: Mailbox, thread_id: str, *, target: str, expected_version: int
) -> InboxThreadReplyStateResult:
    """Set the reply state of ``row``'s thread ``thread_id`` (JMAP id) to ``target``
    (``resolved``, ``no_reply_expected``, or ``needs_reply`` to reopen), if the thread's
    ``reply_version`` is still ``expected_version``; the new state.

    409 when the version is stale (a message arrived or was sent, or another update came
    first: compared again at the write, so of two concurrent updates with the same version one
    wins and the other answers 409); 404 for an unknown thread. The setting holds until a newer
    message arrives (:mod:`shipmail.inbox.replystate`)."""
    current = await thread_state(svc, session, row, thread_id)
    if current.view.version != expected_version:
        raise _stale(current.view.version)
    mailbox_id, before = row.id, current.view.updates
    # End the read transaction: the write below is checked against the row as committed now
    # (SQLite cannot turn a read snapshot another writer has moved past into a write).
    await session.commit()
    now = utc.now()
    stored = InboxThreadState(
        mailbox_id=mailbox_id,
        thread_id=thread_id,
        user_state=target,
        basis_email_id=current.view.basis_email_id,
        updates=before + 1,
        set_at=now,
        updated_at=now,
    )
    if before == 0:  # no row yet: of two inserts one fails on the primary key
        session.add(stored)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            raise _stale(None) from None
    else:  # only from the updates count read: of two updates one finds it changed
        done = await session.exec(
            sa_update(InboxThreadState)
            .where(col(InboxThreadState.mailbox_id) == mailbox_id)
            .where(col(InboxThreadState.thread_id) == thread_id)
            .where(col(InboxThreadState.updates) == before)
            .values(
                user_state=target,
                basis_email_id=current.view.basis_email_id,
                updates=before + 1,
                set_at=now,
                updated_at=now,
            )
        )
        if done.rowcount != 1:
            await session.rollback()
            raise _stale(None)
        await session.commit()
    view = replystate.derive(current.classified, stored)
    wire_id = ids.to_wire(ids.THREAD, thread_id)
    return InboxThreadReplyStateResult.model_validate(
        {"id": wire_id, "thread_id": wire_id, **replystate.view_data(view, wire_id)}
    )


def _stale(version: int | None) -> Conflict:
    now = f" (now {version})" if version is not None else ""
    return Conflict(
        f"The thread's reply_version changed{now}: a message arrived or was sent, or its state was updated; read "
        "the thread again and retry with its current reply_version.",
        details=[detail("expected_reply_version", "stale_version", "not the thread's current reply_version")],
    )
