"""Auto-reply and spam threshold of a mailbox (``PATCH /v1/mailboxes/{id}/auto-reply`` and
``PATCH /v1/mailboxes/{id}/spam-filter``).

Both live on the mailbox row (``auto_reply``: :class:`~shipmail.settings.schemas.AutoReply` as
JSON, ``spam_filter_threshold``: integer) and in the mailbox's one delivery script
(:mod:`shipmail.settings.sieve`). Every change runs in the request's write transaction, begun
before the row is read: the row is read once and locked (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
``FOR UPDATE``: concurrent changes of the mailbox's script wait for each other, in every
process), then :func:`shipmail.delivery.service.update_and_install` changes the row and the
active script together, or neither.

Auto-reply semantics: a request states the whole setting; fields left out are cleared (so an old
date window never lingers into a new auto-reply). ``body`` is required when ``enabled``; the
window is ``[from_date, to_date)`` in UTC, to the second (naive times are UTC, others are
converted; fractions of a second are dropped); ``to_date`` must be after ``from_date``. The
reply's From is the mailbox address; it goes at most once a day
(:data:`~shipmail.settings.sieve.AUTO_REPLY_DAYS`) to each sender.

Spam: messages whose ``X-Spam-Score`` is at or above the threshold go to Junk; they get no
auto-reply and no inbox rule runs on them.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.delivery import service as delivery
from shipmail.http.errors import Detail, ValidationFailed, detail
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes.models import Mailbox
from shipmail.runtime import Services
from shipmail.settings.schemas import BODY_MAX_CHARS, SUBJECT_MAX_CHARS, AutoReply
from shipmail.settings.sieve import body_problem, subject_problem


def normalize_auto_reply(settings: AutoReply) -> AutoReply:
    """``settings`` checked and in stored form (UTC, whole seconds); 422 listing every problem."""
    details: list[Detail] = []
    subject, body = settings.subject, settings.body
    if subject is not None:
        problem = subject_problem(subject)
        if problem:
            details.append(detail("subject", "control_character", problem))
        elif not subject.strip():
            details.append(detail("subject", "blank", "send null for the default subject (Auto: <subject>)"))
        elif len(subject) > SUBJECT_MAX_CHARS:
            details.append(detail("subject", "string_too_long", f"at most {SUBJECT_MAX_CHARS} characters"))
    if body is not None:
        problem = body_problem(body)
        if problem:
            details.append(detail("body", "invalid_character", problem))
        elif len(body) > BODY_MAX_CHARS:
            details.append(detail("body", "string_too_long", f"at most {BODY_MAX_CHARS} characters"))
    if settings.enabled and (body is None or not body.strip()):
        details.append(detail("body", "missing", "body is required when enabled is true"))
    dates: dict[str, datetime | None] = {}
    for name, value in (("from_date", settings.from_date), ("to_date", settings.to_date)):
        try:
            dates[name] = None if value is None else utc.to_second(value)
        except (OverflowError, ValueError):
            dates[name] = None
            details.append(detail(name, "datetime_out_of_range", "not representable in UTC"))
    start, end = dates["from_date"], dates["to_date"]
    if start is not None and end is not None and end <= start:
        details.append(detail("to_date", "before_from_date", "to_date must be after from_date"))
    if details:
        raise ValidationFailed("Invalid auto-reply settings.", details=details)
    return AutoReply(enabled=settings.enabled, subject=subject, body=body, from_date=start, to_date=end)


async def update_auto_reply(
    svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, settings: AutoReply
) -> Mailbox:
    """Store ``settings`` (the whole auto-reply) and install the script that applies them.
    Errors: 422 (checked before anything is read or built), 404, and
    :func:`~shipmail.delivery.service.install`'s."""
    normalized = normalize_auto_reply(settings)
    row = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    await delivery.update_and_install(svc, session, row, auto_reply=normalized)
    return row


async def update_spam_threshold(
    svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, threshold: int
) -> Mailbox:
    """Set the spam threshold (1-14, checked by
    :class:`~shipmail.settings.schemas.UpdateSpamFilterRequest`) and install the script that
    applies it. Errors: 404, :func:`~shipmail.delivery.service.install`'s."""
    row = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    await delivery.update_and_install(svc, session, row, spam_filter_threshold=threshold)
    return row
