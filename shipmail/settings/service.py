"""Auto-reply and spam threshold of a mailbox (``PATCH /v1/mailboxes/{id}/auto-reply`` and
``PATCH /v1/mailboxes/{id}/spam-filter``).

Both live on the mailbox row (``auto_reply``: JSON text, ``spam_filter_threshold``: integer) and
in the mailbox's one delivery script (:mod:`shipmail.sieve.vacation`, :mod:`shipmail.sieve.spam`).
Every change goes through :func:`shipmail.delivery.service.update_and_install`: the row and
the active script change together, or neither does.

Auto-reply semantics: a request states the whole setting; fields left out are cleared (so an old
date window never lingers into a new auto-reply). ``body`` is required when ``enabled``; the
window is ``[from_date, to_date)`` in UTC, to the second (naive times are UTC, others are
converted; fractions of a second are dropped); ``to_date`` must be after ``from_date``. The
reply's From is the mailbox address; it goes at most once a day
(:data:`~shipmail.sieve.model.AUTO_REPLY_DAYS`) to each sender.

Spam: messages whose ``X-Spam-Score`` is at or above the threshold go to Junk; they get no
auto-reply and no inbox rule runs on them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.mailboxes.models import Mailbox
from shipmail.http.errors import ValidationFailed
from shipmail.delivery import service as sieve_sync
from shipmail.runtime import Services
from shipmail.sieve.model import AUTO_REPLY_DAYS, AutoReply, SpamFilter
from shipmail.sieve.vacation import body_problem, subject_problem

logger = logging.getLogger("shipmail.settings.service")

#: Longest reply text, in characters (Shipmail's reference).
BODY_MAX_CHARS = 5000
#: Longest reply subject, in characters (the server folds it into RFC 2047 encoded words).
SUBJECT_MAX_CHARS = 255
#: Allowed spam thresholds (Shipmail's reference); the default is the column's default.
THRESHOLD_MIN, THRESHOLD_MAX, THRESHOLD_DEFAULT = 1, 14, 5


@dataclass(frozen=True)
class AutoReplySettings:
    """The stored auto-reply (``mailboxes.auto_reply``); the JSON keys are these field names."""

    enabled: bool = False
    subject: str | None = None
    body: str | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None

    def to_json(self) -> str:
        def when(value: datetime | None) -> str | None:
            return None if value is None else _utc(value).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"

        return json.dumps({
            "enabled": self.enabled, "subject": self.subject, "body": self.body,
            "from_date": when(self.from_date), "to_date": when(self.to_date),
        }, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> AutoReplySettings:
        """The stored settings; an empty column is "disabled". Raises ValueError when corrupt."""
        if not text:
            return cls()
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("auto_reply is not a JSON object")

        def when(value: Any) -> datetime | None:
            if value is None:
                return None
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            return _utc(parsed)

        def text_or_none(value: Any) -> str | None:
            return None if value is None else str(value)

        return cls(enabled=bool(data.get("enabled", False)), subject=text_or_none(data.get("subject")),
                   body=text_or_none(data.get("body")), from_date=when(data.get("from_date")),
                   to_date=when(data.get("to_date")))


def _utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime to the second (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(microsecond=0)


def _detail(field: str, code: str, message: str) -> dict[str, str]:
    return {"field": field, "code": code, "message": message}


def normalize_auto_reply(settings: AutoReplySettings) -> AutoReplySettings:
    """``settings`` checked and in stored form (UTC, whole seconds); 422 listing every problem."""
    details: list[dict[str, str]] = []
    subject, body = settings.subject, settings.body
    if subject is not None:
        problem = subject_problem(subject)
        if problem:
            details.append(_detail("subject", "control_character", problem))
        elif not subject.strip():
            details.append(_detail("subject", "blank", "send null for the default subject (Auto: <subject>)"))
        elif len(subject) > SUBJECT_MAX_CHARS:
            details.append(_detail("subject", "string_too_long", f"at most {SUBJECT_MAX_CHARS} characters"))
    if body is not None:
        problem = body_problem(body)
        if problem:
            details.append(_detail("body", "invalid_character", problem))
        elif len(body) > BODY_MAX_CHARS:
            details.append(_detail("body", "string_too_long", f"at most {BODY_MAX_CHARS} characters"))
    if settings.enabled and (body is None or not body.strip()):
        details.append(_detail("body", "missing", "body is required when enabled is true"))
    dates: dict[str, datetime | None] = {}
    for name in ("from_date", "to_date"):
        value: datetime | None = getattr(settings, name)
        try:
            dates[name] = None if value is None else _utc(value)
        except (OverflowError, ValueError):
            dates[name] = None
            details.append(_detail(name, "datetime_out_of_range", "not representable in UTC"))
    start, end = dates["from_date"], dates["to_date"]
    if start is not None and end is not None and end <= start:
        details.append(_detail("to_date", "before_from_date", "to_date must be after from_date"))
    if details:
        raise ValidationFailed("Invalid auto-reply settings.", details=details)
    return AutoReplySettings(enabled=settings.enabled, subject=subject, body=body, from_date=start, to_date=end)


def stored_auto_reply(row: Mailbox) -> AutoReplySettings:
    """The auto-reply stored on ``row``; a corrupt value counts as disabled (and is logged), and
    so does a row-like object without the column (some callers of ``sieve_sync.install`` pass one)."""
    try:
        return AutoReplySettings.from_json(getattr(row, "auto_reply", None))
    except (ValueError, TypeError):
        logger.error("mailbox %s has an unreadable auto_reply value; treating it as disabled", row.id)
        return AutoReplySettings()


def plan_auto_reply(row: Mailbox) -> AutoReply | None:
    """The stored auto-reply of ``row`` as compiler input (None when disabled)."""
    settings = stored_auto_reply(row)
    if not settings.enabled or not settings.body:
        return None
    return AutoReply(
        body=settings.body, subject=settings.subject, from_date=settings.from_date, to_date=settings.to_date,
        from_address=row.address, addresses=(row.address,), days=AUTO_REPLY_DAYS,
    )


def plan_spam(row: Mailbox) -> SpamFilter | None:
    """The spam threshold of ``row`` as compiler input (always on; an out-of-range stored value
    falls back to the default, logged; a row-like object without the column gets the default)."""
    threshold = getattr(row, "spam_filter_threshold", THRESHOLD_DEFAULT)
    if not isinstance(threshold, int) or not THRESHOLD_MIN <= threshold <= THRESHOLD_MAX:
        logger.error("mailbox %s has spam_filter_threshold %r; using %d", row.id, threshold, THRESHOLD_DEFAULT)
        threshold = THRESHOLD_DEFAULT
    return SpamFilter(threshold=threshold)


async def update_auto_reply(svc: Services, organization_id: str, mailbox_id: str,
                            settings: AutoReplySettings) -> Mailbox:
    """Store ``settings`` (the whole auto-reply) and install the script that applies them.
    Errors: 422 (checked before anything is built), 404, and :func:`sieve_sync.install`'s."""
    normalized = normalize_auto_reply(settings)

    async def mutate(session: AsyncSession, row: Mailbox) -> None:
        row.auto_reply = normalized.to_json()

    return await sieve_sync.update_and_install(svc, organization_id, mailbox_id, mutate)


async def update_spam_threshold(svc: Services, organization_id: str, mailbox_id: str, threshold: int) -> Mailbox:
    """Set the spam threshold (1-14) and install the script that applies it."""
    if not THRESHOLD_MIN <= threshold <= THRESHOLD_MAX:
        raise ValidationFailed("Invalid spam threshold.", details=[
            _detail("threshold", "out_of_range", f"must be {THRESHOLD_MIN}-{THRESHOLD_MAX}")])

    async def mutate(session: AsyncSession, row: Mailbox) -> None:
        row.spam_filter_threshold = threshold

    return await sieve_sync.update_and_install(svc, organization_id, mailbox_id, mutate)
