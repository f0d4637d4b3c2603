"""Wire models of the inbox (Shipmail's ``InboxMessage``, ``InboxFullMessage``, threads, actions,
the list filters and the attachment download query).

Shared: the sandbox-inbound module renders delivered mail with :class:`InboxFullMessage` through
:func:`shipmail.inbox.service.get_message`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shipmail import utc
from shipmail.http.schemas import Query, Request, Wire

#: The range of ``after``/``before`` filters (JMAP UTCDate years 0001-9999, a day of room).
MIN_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
MAX_INSTANT = datetime(9999, 12, 30, tzinfo=UTC)

InboxKeyword = Literal["$flagged", "$seen", "$draft", "$answered", "$forwarded"]
FolderRole = Literal["inbox", "starred", "sent", "drafts", "archive", "junk", "trash"]
MoveRole = Literal["inbox", "archive", "junk", "trash"]


class InboxEmailHeader(Wire):
    """One address of an address header (From, To, ...), decoded."""

    name: str | None = Field(description="Display name, decoded (RFC 2047), or null.")
    email: str | None = Field(description="The address, or null for a group marker or unparsable input.")


class InboxHeader(Wire):
    """One header field of the message, in message order. ``value`` is unfolded (RFC 5322
    section 2.2.3: every CRLF followed by white space removed) without the white space after the
    colon; encoded words are not decoded. With ``?headers=raw`` it is exactly as stored (folded,
    leading space kept; JMAP ``header:Name:asRaw``)."""

    name: str
    value: str


class InboxBodyPart(Wire):
    """A part of ``text_body`` or ``html_body`` (RFC 8621 section 4.1.4): text, or an inline
    image/audio/video part (e.g. an image a ``cid:`` URL of the HTML names, by its ``cid``)."""

    part_id: str
    type: str
    charset: str | None = None
    size: int | None = Field(default=None, ge=0)
    blob_id: str | None = Field(default=None, description="JMAP blob id of the part's decoded bytes.")
    name: str | None = Field(default=None, description="The part's file name, decoded, or null.")
    disposition: str | None = Field(default=None, description="Content-Disposition type (inline, attachment), or null.")
    cid: str | None = Field(default=None, description="Content-ID without angle brackets (for cid: URLs), or null.")
    download_path: str | None = Field(
        default=None,
        description="Path relative to the API base URL serving this part's bytes with its own type and name.",
    )


class InboxBodyValue(Wire):
    value: str = Field(description="The part's text, decoded to UTF-8.")
    is_encoding_problem: bool
    is_truncated: bool = False


class InboxAttachment(Wire):
    part_id: str
    blob_id: str
    name: str | None
    content_type: str
    size: int = Field(ge=0)
    disposition: str | None = None
    cid: str | None = None
    download_path: str = Field(
        description="Path relative to the API base URL for downloading this attachment (names the message and "
        "part, so the part's own type and file name are served)."
    )


EmailAuthVerdict = Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy", "unknown"]


class EmailAuthenticationSpam(Wire):
    isSpam: bool | None = Field(description="The spam filter's verdict (X-Spam-Status), or null.")
    scoreMilli: int | None = Field(description="Spam score multiplied by 1000, or null when unavailable.")


class EmailAuthenticationRaw(Wire):
    authenticationResults: str | None = Field(
        description="The trusted Authentication-Results value (unfolded), or null."
    )
    receivedSpf: str | None = Field(description="The topmost Received-SPF value (unfolded), or null.")
    spamStatus: str | None = Field(description="The topmost X-Spam-Status value (unfolded), or null.")


class EmailAuthenticationResults(Wire):
    """SPF, DKIM and DMARC verdicts of the border MTA's trusted Authentication-Results header (RFC
    8601; authserv-ids of ``SHIPMAIL_AUTHSERV_IDS``), the spam verdict and the source headers
    (:mod:`shipmail.inbox.authentication`)."""

    spf: EmailAuthVerdict
    dkim: EmailAuthVerdict
    dmarc: EmailAuthVerdict
    spam: EmailAuthenticationSpam
    raw: EmailAuthenticationRaw


class InboxMessageSecurityReviewInfo(Wire):
    decision: Literal["released"]
    released_at: datetime
    released_by: Literal["user", "api_key"]


class InboxMessageSecurity(Wire):
    """Content-scan state (Shipmail SDK 0.6.7's ``InboxMessageSecurity``). No scanner runs here:
    always ``not_scanned``; ``content_sha256`` names the exact stored message."""

    status: Literal["flagged", "not_flagged", "not_scanned"]
    risk_codes: list[str]
    scanner: Literal["pattern_v1"]
    content_sha256: str = Field(
        description=(
            "SHA-256 (hex) of the message's JMAP blobId, which the mail server derives from the exact "
            "stored bytes: a content fingerprint that changes exactly when the content does, not the "
            "SHA-256 of the bytes themselves (that would cost a download per message)."
        )
    )
    review: InboxMessageSecurityReviewInfo | None


class _MessageSummary(Wire):
    """What every rendering of a message carries: envelope, flags, preview, size."""

    id: str = Field(description="Message id (eml_...).")
    thread_id: str = Field(description="Thread id (thr_...).")
    conversation_id: str | None = None
    mailbox_id: str
    address: str
    folder_ids: list[str] = Field(description="Folders holding the message (fld_...).")
    keywords: dict[str, bool]
    from_: list[InboxEmailHeader] | None = Field(alias="from", serialization_alias="from")
    to: list[InboxEmailHeader] | None
    subject: str | None
    received_at: datetime
    preview: str
    has_attachment: bool = Field(
        description="Whether the message has attachments: true exactly when its `attachments` list (RFC 8621 "
        "section 4.1.4) is not empty."
    )
    size: int = Field(ge=0)
    authentication_results: None = Field(
        default=None,
        description="Null in summaries (a thread's latest_message, events); the full message carries the "
        "border MTA's verdicts.",
    )

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


class InboxMessage(_MessageSummary):
    """A message as listed: envelope, flags and preview, no bodies."""

    object: Literal["inbox_message"] = "inbox_message"


class InboxFullMessage(_MessageSummary):
    """One message with headers, decoded bodies and attachments. In a list, each body value holds
    at most 32 KiB of UTF-8 (`is_truncated` when cut; the full message has up to 4 MiB per part)."""

    object: Literal["inbox_message_full"] = "inbox_message_full"
    cc: list[InboxEmailHeader] | None
    bcc: list[InboxEmailHeader] | None
    reply_to: list[InboxEmailHeader] | None
    sender: list[InboxEmailHeader] | None = None
    sent_at: datetime | None
    message_id: list[str] | None
    in_reply_to: list[str] | None
    references: list[str] | None
    headers: list[InboxHeader]
    body_values: dict[str, InboxBodyValue]
    text_body: list[InboxBodyPart]
    html_body: list[InboxBodyPart]
    attachments: list[InboxAttachment]
    authentication_results: EmailAuthenticationResults | None = Field(  # type: ignore[assignment]
        default=None,
        description="Normalized SPF, DKIM and DMARC verdicts, spam assessment and source headers; null when the "
        "message has no trusted Authentication-Results, Received-SPF nor X-Spam-Status. Require dmarc to be pass "
        "before trusting the From address.",
    )
    reply_text: str | None = Field(
        default=None,
        description="The new text of the message without what it quotes (reply and forward headers and what "
        "follows them, a trailing block of `>` lines); null when it has no text body. In a list it comes from "
        "the bounded body value (cut like it when `is_truncated`).",
    )
    security: InboxMessageSecurity = Field(description="Content-scan state (never scanned here: `not_scanned`).")


class InboxCursorPagination(Wire):
    limit: int = Field(ge=1, le=100)
    total: int = Field(ge=0)
    has_more: bool
    next_cursor: str | None
    snapshot_at: datetime | None = Field(
        default=None, description="The `before` cutoff fixed by the first page (mail received later is not listed)."
    )


class InboxMessages(Wire):
    object: Literal["inbox_messages"] = "inbox_messages"
    mailbox_id: str
    address: str
    data: list[InboxFullMessage] = Field(
        description="The page's messages in full; each body value at most 32 KiB of UTF-8 (`is_truncated`)."
    )
    junk_total: int | None = Field(
        ge=0, description="Messages in the mailbox's Junk folder (all of them, whatever the filters); null without one."
    )
    pagination: InboxCursorPagination


ReplyStateName = Literal["needs_reply", "waiting_on_contact", "resolved", "no_reply_expected"]
AttentionStateName = Literal["needs_reply", "waiting_on_them", "done", "follow_up_due", "delivery_failed", "no_action"]


class _ReplyStateFields(Wire):
    """A thread's reply state (:mod:`shipmail.inbox.replystate`): the reference's fields and
    Shipmail SDK 0.6.7's names of the same things."""

    reply_state: ReplyStateName = Field(
        description="needs_reply: the newest message is inbound (or the user reopened it); waiting_on_contact: the "
        "newest message was sent by the mailbox; resolved / no_reply_expected: set by the user, until a newer "
        "message arrives."
    )
    reply_version: int = Field(
        ge=1,
        description="Grows with every message of the thread (drafts excluded) and every reply-state update: pass "
        "it as expected_reply_version.",
    )
    needs_reply_since: datetime | None = Field(
        description="Since when the thread needs a reply: the first inbound message after the last outbound one "
        "(or when the user reopened it); null unless reply_state is needs_reply."
    )
    conversation_id: str = Field(description="SDK 0.6.7's name of the thread id.")
    attention_state: AttentionStateName = Field(
        description="SDK 0.6.7's name of reply_state (waiting_on_contact = waiting_on_them, resolved = done, "
        "no_reply_expected = no_action)."
    )
    version: int = Field(ge=1, description="SDK 0.6.7's name of reply_version.")
    attention_since: datetime | None = Field(description="SDK 0.6.7's name of needs_reply_since.")
    done_at: datetime | None = Field(description="When the user resolved the thread (reply_state resolved), else null.")
    follow_up_at: None = Field(default=None, description="Always null: follow-up reminders are not offered.")
    assigned_member_id: None = Field(default=None, description="Always null: threads are not assigned here.")


class _LatestFields(Wire):
    latest_message_id: str | None = Field(description="The newest message of the thread (eml_...).")
    latest_email_id: str | None = Field(description="The JMAP Email id of the newest message.")
    latest_inbound_message_id: str | None = Field(
        description="The newest inbound message: not a draft, not in Sent, not from the mailbox's own addresses."
    )
    latest_inbound_email_id: str | None
    latest_inbound_at: datetime | None
    latest_outbound_message_id: str | None = Field(
        description="The newest outbound message: in Sent, or from one of the mailbox's own addresses."
    )
    latest_outbound_email_id: str | None
    latest_outbound_at: datetime | None


class InboxThreadSummary(_ReplyStateFields, _LatestFields):
    object: Literal["inbox_thread_summary"] = "inbox_thread_summary"
    id: str = Field(description="Thread id (thr_...).")
    thread_id: str
    subject: str | None
    latest_from_address: str | None
    message_count: int = Field(ge=0, description="Messages in the thread, all folders.")
    unread_count: int = Field(ge=0, description="Messages in the thread without $seen (drafts excluded).")
    first_message_at: datetime
    last_message_at: datetime
    latest_message: InboxMessage = Field(description="The newest message matching the filters.")


class InboxThreadsPagination(InboxCursorPagination):
    pass


class InboxThreads(Wire):
    object: Literal["inbox_threads"] = "inbox_threads"
    mailbox_id: str
    address: str
    data: list[InboxThreadSummary]
    summary: dict[str, int] = Field(
        description="Threads matching the filters other than reply_state: `total`, and one count per reply "
        "state (needs_reply, waiting_on_contact, resolved, no_reply_expected)."
    )
    pagination: InboxThreadsPagination


class InboxThread(_ReplyStateFields, _LatestFields):
    object: Literal["inbox_thread"] = "inbox_thread"
    mailbox_id: str
    address: str
    thread_id: str
    data: list[InboxFullMessage] = Field(description="The thread's messages, oldest first.")


class UpdateInboxThreadReplyStateRequest(Request):
    """The reference's body (``reply_state`` and ``expected_reply_version``), or Shipmail SDK
    0.6.7's (``expected_version`` with ``done``: true resolves, false reopens): one or the other."""

    reply_state: Literal["needs_reply", "resolved", "no_reply_expected"] | None = Field(
        default=None, description="The state to set: resolved, no_reply_expected, or needs_reply to reopen."
    )
    expected_reply_version: int | None = Field(
        default=None, ge=1, description="The thread's reply_version the change is based on (409 when stale)."
    )
    expected_version: int | None = Field(default=None, ge=1, description="SDK 0.6.7's expected_reply_version.")
    done: bool | None = Field(default=None, description="SDK 0.6.7: true = resolved, false = needs_reply.")
    follow_up_at: None = Field(default=None, description="SDK 0.6.7: follow-up reminders are not offered; only null.")

    @model_validator(mode="after")
    def _one_form(self) -> UpdateInboxThreadReplyStateRequest:
        reference = self.reply_state is not None or self.expected_reply_version is not None
        sdk = self.expected_version is not None or self.done is not None
        if reference and sdk:
            raise ValueError("send reply_state with expected_reply_version, or expected_version with done; not both")
        if sdk:
            if self.expected_version is None or self.done is None:
                raise ValueError("expected_version and done are both required")
        elif self.reply_state is None or self.expected_reply_version is None:
            raise ValueError("reply_state and expected_reply_version are both required")
        return self

    @property
    def target(self) -> str:
        """The reply state to set."""
        if self.reply_state is not None:
            return self.reply_state
        return "resolved" if self.done else "needs_reply"

    @property
    def expected(self) -> int:
        version = self.expected_reply_version if self.expected_reply_version is not None else self.expected_version
        assert version is not None
        return version


class InboxThreadReplyStateResult(_ReplyStateFields):
    object: Literal["inbox_thread_reply_state"] = "inbox_thread_reply_state"
    id: str = Field(description="Thread id (thr_...).")
    thread_id: str


class InboxMessageAction(Wire):
    object: Literal["inbox_message_action"] = "inbox_message_action"
    mailbox_id: str
    address: str
    message_id: str
    ok: Literal[True] = True


class UpdateInboxMessageRequest(Request):
    """Provide at least one field to set on the message."""

    read: bool | None = Field(default=None, description="Set whether the message is read.")
    starred: bool | None = Field(default=None, description="Set whether the message is starred.")

    @model_validator(mode="after")
    def _at_least_one(self) -> UpdateInboxMessageRequest:
        if self.read is None and self.starred is None:
            raise ValueError("send at least one of read and starred")
        return self


class MoveInboxMessageRequest(Request):
    """Provide exactly one target: target_role or target_folder_id."""

    from_folder_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Current folder ID. Optional; Shipmail can infer it from the message.",
    )
    target_role: MoveRole | None = Field(default=None, description="System folder role to move the message to.")
    target_folder_id: str | None = Field(
        default=None, min_length=1, max_length=256, description="Custom folder ID to move the message to."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> MoveInboxMessageRequest:
        if (self.target_role is None) == (self.target_folder_id is None):
            raise ValueError("send exactly one of target_role and target_folder_id")
        return self


class InboxListQuery(Query):
    """Filters of the message and thread lists."""

    folder_id: str | None = Field(
        default=None, min_length=1, max_length=256, description="Filter messages to a specific folder ID (fld_...)."
    )
    folder_role: FolderRole | None = Field(
        default=None, description="Filter by a system folder role (starred = keyword $flagged). Not with folder_id."
    )
    search_text: str | None = Field(default=None, max_length=500, description="Full-text search. Max 500 characters.")
    from_: str | None = Field(default=None, alias="from", max_length=500, description="Substring of From.")
    to: str | None = Field(default=None, max_length=500, description="Substring of To.")
    subject: str | None = Field(default=None, max_length=500, description="Substring of the subject.")
    has_attachment: bool | None = Field(
        default=None, description="Only messages with (true) or without (false) attachments."
    )
    has_keyword: InboxKeyword | None = Field(default=None, description="Only messages with this keyword.")
    not_keyword: InboxKeyword | None = Field(default=None, description="Only messages without this keyword.")
    after: datetime | None = Field(default=None, description="Only messages received at or after this instant.")
    before: datetime | None = Field(
        default=None,
        description="Only messages received before this instant. Defaults to the first-page snapshot time.",
    )
    cursor: str | None = Field(default=None, max_length=2048, description="Opaque cursor from the previous page.")
    limit: int = Field(default=50, ge=1, le=100, description="Number of items to return (1-100, default 50).")

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @field_validator("after", "before")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        """Instants a JMAP UTCDate can carry with a second of room either side; others are 422
        (``datetime_out_of_range``) rather than an overflow deeper down."""
        if value is None:
            return value
        if value.tzinfo is None:
            value = utc.as_utc(value)
        if not MIN_INSTANT <= value <= MAX_INSTANT:
            raise PydanticCustomError(
                "datetime_out_of_range",
                "must be between {low} and {high}",
                {"low": MIN_INSTANT.isoformat(), "high": MAX_INSTANT.isoformat()},
            )
        return value

    @model_validator(mode="after")
    def _one_folder(self) -> InboxListQuery:
        if self.folder_id is not None and self.folder_role is not None:
            raise ValueError("use either folder_id or folder_role, not both")
        return self


#: Order keys of the thread list: the reference's ``sort_by`` values and SDK 0.6.7's
#: ``attention_since`` (= ``needs_reply_since``).
InboxThreadSort = Literal["needs_reply_since", "attention_since", "last_message_at"]


class InboxThreadListQuery(InboxListQuery):
    """Query of the thread list: the message-list filters, the reference's page size (default
    25) and its reply-queue parameters ``reply_state``, ``sort_by`` and ``order``.

    Without ``reply_state`` every thread is listed (this list is also the thread browser of the
    message filters); without ``reply_state``, ``sort_by`` and ``order`` newest matching message
    first. With ``reply_state`` the reference's defaults apply (``sort_by=needs_reply_since``,
    ``order=asc``); with ``sort_by`` the order defaults to ``asc``. ``attention_state`` and
    ``sort_by=attention_since`` are SDK 0.6.7's names (``follow_up_due`` and
    ``delivery_failed`` are not tracked here: 422 ``not_supported``)."""

    limit: int = Field(default=25, ge=1, le=100, description="Number of items to return (1-100, default 25).")
    reply_state: ReplyStateName | None = Field(default=None, description="Only threads in this reply state.")
    attention_state: AttentionStateName | None = Field(
        default=None, description="SDK 0.6.7's name of the reply-state filter (waiting_on_them, done, no_action)."
    )
    sort_by: InboxThreadSort | None = Field(
        default=None,
        description="needs_reply_since (threads without one last), or last_message_at. Default: needs_reply_since "
        "with reply_state, else newest matching message first.",
    )
    order: Literal["asc", "desc"] | None = Field(
        default=None, description="Order direction (default asc with sort_by, else desc)."
    )

    @field_validator("attention_state")
    @classmethod
    def _tracked_attention(cls, value: str | None) -> str | None:
        if value in ("follow_up_due", "delivery_failed"):
            raise PydanticCustomError(
                "not_supported",
                "attention_state={value} is not supported: follow-ups and delivery failures are not tracked",
                {"value": value},
            )
        return value

    @model_validator(mode="after")
    def _one_state_filter(self) -> InboxThreadListQuery:
        if self.reply_state is not None and self.attention_state is not None:
            raise ValueError("use either reply_state or attention_state, not both")
        return self

    @property
    def state_filter(self) -> str | None:
        """The reply state to list (from ``reply_state`` or ``attention_state``), or None."""
        if self.reply_state is not None:
            return self.reply_state
        if self.attention_state is not None:
            return {"waiting_on_them": "waiting_on_contact", "done": "resolved", "no_action": "no_reply_expected"}.get(
                self.attention_state, self.attention_state
            )
        return None

    @property
    def sort_key(self) -> str | None:
        """``needs_reply_since``, ``last_message_at``, or None (the default view's order): the
        reference's default ``needs_reply_since`` when a reply state is asked for."""
        if self.sort_by == "attention_since":
            return "needs_reply_since"
        if self.sort_by is not None:
            return self.sort_by
        if self.state_filter is not None:
            return "needs_reply_since"
        return "last_message_at" if self.order is not None else None

    @property
    def descending(self) -> bool:
        if self.order is not None:
            return self.order == "desc"
        return self.sort_key is None  # the reference's asc whenever the queue is sorted


class MessageQuery(Query):
    """Query of the full message and thread reads."""

    headers: Literal["unfolded", "raw"] = Field(
        default="unfolded",
        description="`unfolded` (default): header values unfolded without the leading space; `raw`: exactly as "
        "stored (JMAP `header:Name:asRaw`).",
    )


class AttachmentQuery(Query):
    """Query of ``GET /v1/mailboxes/{id}/inbox/attachments`` (``downloadMailboxInboxAttachment``)."""

    blob_id: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9_\-+=/.]+$",
        description="JMAP attachment blob ID from an inbox message (attachments[].blob_id).",
    )
    message_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The message (eml_...) holding the part: its type and name are served. From download_path.",
    )
    part_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="The part of message_id (its part_id) whose type and name are served. Needs message_id.",
    )
    type: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$",
        description="Content-Type to serve when only blob_id is given (default application/octet-stream); ignored "
        "with message_id, whose part's own type is served.",
    )
    name: str | None = Field(
        default=None,
        max_length=512,
        description="Suggested download filename. Defaults to the part's own name (message/rfc822 without one: "
        "attachment.eml), else attachment.",
    )

    @model_validator(mode="after")
    def _part_needs_message(self) -> AttachmentQuery:
        if self.part_id is not None and self.message_id is None:
            raise ValueError("part_id needs message_id")
        return self
