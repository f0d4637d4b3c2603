"""JMAP Email (RFC 8621 section 4): property lists, argument builders and small raw decoders.

The methods are jmapc's (``EmailQuery``, ``EmailGet``, ``EmailSet``), built into a
:class:`shipmail.jmap.request.Request`; this module adds what they need from us:

- the property lists the inbox asks for (:data:`LIST_PROPERTIES`, :data:`FULL_PROPERTIES`, ...),
  :func:`full_get` (Email/get of whole messages with decoded bodies, bounded per part) and
  :func:`summary_get` (what a message summary needs: envelope, body part lists, bounded text);
- :func:`query` (Email/query) with its typed JSON filter (:data:`Filter`) and sort
  (:class:`EmailComparator`, :data:`NEWEST_FIRST`), and the Cyrus-specific date bounds
  :func:`received_before` and :func:`received_at_or_after`;
- decoders of the raw Email JSON (:func:`keywords`, :func:`mailbox_ids`, :func:`find_part`,
  :func:`find_part_id`, :func:`unfold`);
- ``Email/import`` (:class:`EmailImport`, :func:`import_entry`), which jmapc lacks.

Responses are read as the raw dicts the server sent, never through jmapc's ``Email`` dataclass:
decoding a page of 50 Emails with dataclasses_json costs more CPU than the whole HTTP round trip
(measured: ~4 ms against ~1 ms), and the inbox renders the JSON into its own wire models anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, TypedDict, cast

from jmapc import Comparator, EmailQueryFilter
from jmapc.constants import JMAP_URN_MAIL as URN_MAIL
from jmapc.methods import EmailGet, EmailQuery
from jmapc.methods.base import MethodWithAccount
from jmapc.models import ListOrRef

from shipmail.utc import as_utc, ceil_second

#: Properties of a listed message (no bodies).
LIST_PROPERTIES: list[str] = [
    "id",
    "threadId",
    "mailboxIds",
    "keywords",
    "from",
    "to",
    "subject",
    "receivedAt",
    "preview",
    "hasAttachment",
    "size",
]

#: Properties of a full message.
FULL_PROPERTIES: list[str] = [
    *LIST_PROPERTIES,
    "cc",
    "bcc",
    "replyTo",
    "sender",
    "sentAt",
    "messageId",
    "inReplyTo",
    "references",
    "headers",
    "textBody",
    "htmlBody",
    "attachments",
    "bodyValues",
]

#: Properties of the body parts (textBody, htmlBody, attachments).
BODY_PROPERTIES: list[str] = ["partId", "blobId", "size", "name", "type", "charset", "disposition", "cid"]

#: Properties of a message's own blob and its part tree (which part a blob id names: :func:`find_part`).
STRUCTURE_PROPERTIES: list[str] = ["id", "blobId", "size", "bodyStructure"]

#: Properties of the parts of a ``bodyStructure`` (with ``subParts``, the tree).
STRUCTURE_BODY_PROPERTIES: list[str] = [
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "subParts",
]

#: Properties of a thread's members when only counts, dates, folders and senders are needed.
THREAD_MEMBER_PROPERTIES: list[str] = ["id", "threadId", "receivedAt", "keywords", "mailboxIds", "from"]

#: Back-reference path (RFC 8620 section 3.7) to the thread ids of an Email/get result.
THREAD_IDS = "/list/*/threadId"

#: Keywords the server keeps for itself (Cyrus's attachment marker): not shown to API clients.
HIDDEN_KEYWORDS = frozenset({"$hasattachment", "$hasnoattachment"})

#: Keywords the service itself puts on messages start with this (the delivery script's marks of
#: the inbox rules that matched, :func:`shipmail.rules.sieve.rule_keyword`): not shown either.
SERVICE_KEYWORD_PREFIX = "$shipmail-"

#: The most text of one body part returned by a full message (bytes of UTF-8).
MAX_BODY_VALUE_BYTES = 4 * 1024 * 1024

#: The most text of one body part returned per message of a LIST (bytes of UTF-8, JMAP
#: ``maxBodyValueBytes``; a longer part comes cut at a character boundary with ``isTruncated``).
#: 32 KiB: the whole text of most mail, enough HTML to compute a preview behind a long
#: ``<style>`` block, and at most ~3 MiB of text for a page of 50 two-part messages.
LIST_MAX_BODY_VALUE_BYTES = 32 * 1024

#: Properties of a message summary (thread list): the list properties plus the body part lists,
#: whose decoded text gives HTML-only mail a text preview and whose ``attachments`` give
#: ``has_attachment``.
SUMMARY_PROPERTIES: list[str] = [*LIST_PROPERTIES, "textBody", "htmlBody", "attachments", "bodyValues"]

#: Properties of the body parts of a summary (the type picks the preview's source).
SUMMARY_BODY_PROPERTIES: list[str] = ["partId", "blobId", "type"]


def full_get(ids: ListOrRef[str], *, max_body_value_bytes: int = MAX_BODY_VALUE_BYTES) -> EmailGet:
    """Email/get of whole messages (``ids``: a list or a back-reference): :data:`FULL_PROPERTIES`,
    body parts with :data:`BODY_PROPERTIES`, text and HTML bodies decoded to UTF-8 up to
    ``max_body_value_bytes`` per part (RFC 8621 section 4.2; :data:`MAX_BODY_VALUE_BYTES` for one
    message or a thread, :data:`LIST_MAX_BODY_VALUE_BYTES` for a list)."""
    return EmailGet(
        ids=ids,
        properties=FULL_PROPERTIES,
        body_properties=BODY_PROPERTIES,
        fetch_text_body_values=True,
        fetch_html_body_values=True,
        max_body_value_bytes=max_body_value_bytes,
    )


def summary_get(ids: ListOrRef[str]) -> EmailGet:
    """Email/get of message summaries: :data:`SUMMARY_PROPERTIES`, the text body's values up to
    :data:`LIST_MAX_BODY_VALUE_BYTES` per part (for the preview of HTML-only mail)."""
    return EmailGet(
        ids=ids,
        properties=SUMMARY_PROPERTIES,
        body_properties=SUMMARY_BODY_PROPERTIES,
        fetch_text_body_values=True,
        max_body_value_bytes=LIST_MAX_BODY_VALUE_BYTES,
    )


# ----------------------------------------------------------------------------- query


class FilterCondition(TypedDict, total=False):
    """An Email/query FilterCondition (RFC 8621 section 4.4.1): the properties the gateway uses.

    ``before``/``after`` are UTCDates (:func:`received_before`, :func:`received_at_or_after`);
    ``header`` is ``[name]`` or ``[name, substring]``."""

    inMailbox: str
    inMailboxOtherThan: list[str]
    before: str
    after: str
    hasKeyword: str
    notKeyword: str
    hasAttachment: bool
    text: str
    header: list[str]


class FilterOperator(TypedDict):
    """An Email/query FilterOperator (RFC 8620 section 5.5): ``AND``/``OR``/``NOT`` of filters."""

    operator: Literal["AND", "OR", "NOT"]
    conditions: list[Filter]


#: An Email/query ``filter``: a condition or an operator over filters.
Filter = FilterCondition | FilterOperator


class EmailComparator(TypedDict):
    """An Email/query sort Comparator (RFC 8620 section 5.5, RFC 8621 section 4.4.2)."""

    property: str
    isAscending: bool


#: ``receivedAt desc, id desc``: newest first, a total order (Cyrus sorts by id when asked).
NEWEST_FIRST: list[EmailComparator] = [
    {"property": "receivedAt", "isAscending": False},
    {"property": "id", "isAscending": False},
]

#: ``receivedAt desc``.
NEWEST_RECEIVED_FIRST: list[EmailComparator] = [{"property": "receivedAt", "isAscending": False}]


def query(
    filter: Filter,
    sort: list[EmailComparator],
    *,
    limit: int,
    position: int | None = None,
    calculate_total: bool | None = None,
    collapse_threads: bool | None = None,
) -> EmailQuery:
    """jmapc's ``EmailQuery`` (RFC 8621 section 4.4) of ``filter`` and ``sort`` as JSON.

    jmapc types ``filter`` and ``sort`` as its dataclasses, and both are wrong for us: its
    ``Comparator`` also serialises ``anchorOffset``, ``calculateTotal`` and ``position`` (query
    arguments, not Comparator properties), its filter dataclass encodes dates without converting
    them to UTC and holds one ``header`` per condition, and each nested dataclass adds ~0.1 ms of
    dataclasses_json encoding per request (measured). jmapc passes JSON values through unchanged
    (verified: the request bodies are the same), so the filter and sort are typed here as
    :class:`FilterCondition`/:class:`FilterOperator` and :class:`EmailComparator` (plain dicts at
    run time) and this is the one place that casts them to jmapc's types."""
    return EmailQuery(
        filter=cast(EmailQueryFilter, filter),
        sort=cast(list[Comparator], sort),
        position=position,
        limit=limit,
        calculate_total=calculate_total,
        collapse_threads=collapse_threads,
    )


def utc_date(moment: datetime) -> str:
    """``moment`` as a JMAP UTCDate (RFC 3339, four-digit year, whole seconds truncated, ``Z``).

    Not ``strftime("%Y")``: glibc does not zero-pad years below 1000."""
    m = as_utc(moment)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}Z"


# Cyrus 3.6 keeps receivedAt in whole seconds, drops the fraction of a filter's date, and compares
# `before` INCLUSIVELY (receivedAt <= before; RFC 8621 says strictly before); `after` is
# receivedAt >= after as the RFC says. These two give the API's semantics on top of that.


def received_before(moment: datetime) -> str:
    """The Email/query ``before`` value selecting ``receivedAt < moment`` on Cyrus."""
    return utc_date(ceil_second(moment) - timedelta(seconds=1))


def received_at_or_after(moment: datetime) -> str:
    """The Email/query ``after`` value selecting ``receivedAt >= moment`` on Cyrus."""
    return utc_date(ceil_second(moment))


# ----------------------------------------------------------------------------- decoders


def keywords(raw: Any) -> dict[str, bool]:
    """The message's keywords (lower-cased by JMAP servers), without server-internal markers."""
    if not isinstance(raw, dict):
        return {}
    return {
        k: True
        for k, v in raw.items()
        if v and k.lower() not in HIDDEN_KEYWORDS and not k.lower().startswith(SERVICE_KEYWORD_PREFIX)
    }


def mailbox_ids(email: dict[str, Any]) -> list[str]:
    """The JMAP Mailbox ids holding the raw Email ``email`` (its ``mailboxIds`` set), in server order."""
    return [m for m, on in (email.get("mailboxIds") or {}).items() if on]


def find_part_id(part: dict[str, Any], part_id: str) -> dict[str, Any] | None:
    """The raw EmailBodyPart in the tree ``part`` (a ``bodyStructure``) whose ``partId`` is
    ``part_id``, depth first; None when no part has it (multipart parts have none)."""
    if part.get("partId") == part_id:
        return part
    for sub in part.get("subParts") or []:
        found = find_part_id(sub, part_id)
        if found is not None:
            return found
    return None


_FOLD = re.compile(r"\r?\n(?=[ \t])")


def unfold(raw: str) -> str:
    """A header field value as the ``headers`` property gives it (RFC 8621 section 4.1.3: raw,
    folded, with the white space after the colon) unfolded per RFC 5322 section 2.2.3 (every
    CRLF followed by white space removed) and without its leading white space. Encoded words and
    other white space are kept (the ``asRaw`` form, unfolded)."""
    if "\n" in raw:
        raw = _FOLD.sub("", raw)
    return raw.lstrip(" \t")


def find_part(part: dict[str, Any], blob_id: str) -> dict[str, Any] | None:
    """The raw EmailBodyPart in the tree ``part`` (a ``bodyStructure``) whose ``blobId`` is
    ``blob_id``, depth first; None when no part has it."""
    if part.get("blobId") == blob_id:
        return part
    for sub in part.get("subParts") or []:
        found = find_part(sub, blob_id)
        if found is not None:
            return found
    return None


# ----------------------------------------------------------------------------- Email/import


@dataclass
class EmailImport(MethodWithAccount):
    """``Email/import`` (RFC 8621 section 4.8), which jmapc lacks: store messages uploaded as blobs.

    ``emails`` maps a creation id to an EmailImport object, raw JSON as the server takes it
    (:func:`import_entry`). The response has ``created`` (creation id -> ``{id, blobId, threadId,
    size}``) and ``notCreated`` (creation id -> SetError). Cyrus 3.6 (measured): a message whose
    bytes are already in the account, in any mailbox, is ``alreadyExists`` with ``existingId``
    (email ids are derived from the message's bytes); bare LF line ends are ``invalidEmail``
    ("Message contains bare newlines"), as is text without a header block ("invalid header")."""

    method_namespace: ClassVar[str | None] = "Email"
    method_type: ClassVar[str | None] = "import"
    using: ClassVar[set[str]] = {URN_MAIL}

    emails: dict[str, dict[str, Any]] = field(default_factory=dict)


def import_entry(
    blob_id: str, mailbox_ids: list[str], keywords: list[str], received_at: datetime | None
) -> dict[str, Any]:
    """One EmailImport object (RFC 8621 section 4.8): the uploaded ``blob_id`` into ``mailbox_ids``
    with ``keywords``; ``received_at`` (whole seconds, UTC) or the server's current time."""
    entry: dict[str, Any] = {
        "blobId": blob_id,
        "mailboxIds": dict.fromkeys(mailbox_ids, True),
        "keywords": dict.fromkeys(keywords, True),
    }
    if received_at is not None:
        entry["receivedAt"] = utc_date(received_at)
    return entry
