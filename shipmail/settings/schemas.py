"""A mailbox's delivery settings: THE definitions of the auto-reply and the spam threshold, and the
requests of ``PATCH /v1/mailboxes/{id}/auto-reply`` and ``PATCH /v1/mailboxes/{id}/spam-filter``.

:class:`AutoReply` is the auto-reply everywhere: the ``auto_reply`` of Shipmail's Mailbox object,
the ``mailboxes.auto_reply`` column (JSON, validated on read: :data:`AUTO_REPLY`; an unreadable
value reads as disabled and is logged) and the input of :mod:`shipmail.settings.sieve`. Stored
values are in normal form (UTC, whole seconds; see :func:`shipmail.settings.service.normalize_auto_reply`).
The spam threshold is an integer column (``mailboxes.spam_filter_threshold``) between
:data:`THRESHOLD_MIN` and :data:`THRESHOLD_MAX`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, TypeAdapter

from shipmail.http.schemas import Request, Wire

#: Longest reply text, in characters (Shipmail's reference).
BODY_MAX_CHARS = 5000
#: Longest reply subject, in characters (the server folds it into RFC 2047 encoded words).
SUBJECT_MAX_CHARS = 255
#: Allowed spam thresholds (Shipmail's reference) and the default of a new mailbox.
THRESHOLD_MIN, THRESHOLD_MAX, THRESHOLD_DEFAULT = 1, 14, 5


class AutoReply(Wire):
    # The auto-reply (out-of-office) of a mailbox; the default is "disabled". ``body``: the reply
    # text; ``subject``: one line, None for ``Auto: <original subject>``; ``[from_date, to_date)``:
    # the UTC window in which replies go (None: open on that side). (A comment, not a docstring:
    # a docstring would become the schema's description in the OpenAPI document.)

    enabled: bool = False
    subject: str | None = None
    body: str | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None


#: The ``mailboxes.auto_reply`` column's type.
AUTO_REPLY = TypeAdapter(AutoReply)


class UpdateAutoReplyRequest(Request):
    enabled: bool = Field(strict=True, description="Whether auto-reply is active.")
    subject: str | None = Field(
        default=None,
        min_length=1,
        max_length=SUBJECT_MAX_CHARS,
        description="Subject of the reply (one line, no control characters). Null or absent: "
        '"Auto: " followed by the subject of the message replied to.',
    )
    body: str | None = Field(
        default=None,
        max_length=BODY_MAX_CHARS,
        description="Reply message text (plain text; line breaks kept). Required when enabled is true.",
    )
    from_date: datetime | None = Field(
        default=None,
        description="Start date in UTC ISO 8601 (a time without offset is UTC). No reply before it; null: no start.",
    )
    to_date: datetime | None = Field(
        default=None,
        description="End date in UTC ISO 8601, after from_date. No reply from then on; null: no end.",
    )

    def auto_reply(self) -> AutoReply:
        """The requested setting, as stated (not yet normalised)."""
        return AutoReply(
            enabled=self.enabled, subject=self.subject, body=self.body, from_date=self.from_date, to_date=self.to_date
        )


class UpdateSpamFilterRequest(Request):
    threshold: int = Field(
        strict=True,
        ge=THRESHOLD_MIN,
        le=THRESHOLD_MAX,
        description="Spam score threshold for moving messages to junk. Lower is stricter.",
    )
