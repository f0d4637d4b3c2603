"""JMAP Email (RFC 8621 section 4): the property lists the inbox asks for and small raw decoders.

jmapc serialises the requests; responses are read as the raw dicts the server sent (decoding 50
Emails through jmapc's dataclasses_json models costs far more than the request itself).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shipmail.utc import as_utc, ceil_second

#: Properties of a listed message (no bodies).
LIST_PROPERTIES: list[str] = [
    "id", "threadId", "mailboxIds", "keywords", "from", "to", "subject", "receivedAt", "preview",
    "hasAttachment", "size",
]

#: Properties of a full message.
FULL_PROPERTIES: list[str] = [
    *LIST_PROPERTIES, "cc", "bcc", "replyTo", "sender", "sentAt", "messageId", "inReplyTo", "references",
    "headers", "textBody", "htmlBody", "attachments", "bodyValues",
]

#: Properties of the body parts (textBody, htmlBody, attachments).
BODY_PROPERTIES: list[str] = ["partId", "blobId", "size", "name", "type", "charset", "disposition", "cid"]

#: Keywords the server keeps for itself (Cyrus's attachment marker): not shown to API clients.
HIDDEN_KEYWORDS = frozenset({"$hasattachment", "$hasnoattachment"})

#: The most text of one body part returned by a full message (bytes of UTF-8).
MAX_BODY_VALUE_BYTES = 4 * 1024 * 1024


def full_get_arguments() -> dict[str, Any]:
    """Email/get arguments (beyond ids) of a full message."""
    return {
        "properties": FULL_PROPERTIES,
        "bodyProperties": BODY_PROPERTIES,
        "fetchTextBodyValues": True,
        "fetchHTMLBodyValues": True,
        "maxBodyValueBytes": MAX_BODY_VALUE_BYTES,
    }


def parse_date(value: Any) -> datetime | None:
    """A JMAP UTCDate/Date (``2024-01-02T03:04:05Z``) as an aware datetime; None when absent/bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


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


def keywords(raw: Any) -> dict[str, bool]:
    """The message's keywords (lower-cased by JMAP servers), without server-internal markers."""
    if not isinstance(raw, dict):
        return {}
    return {k: True for k, v in raw.items() if v and k.lower() not in HIDDEN_KEYWORDS}
