"""A mailbox's send limits and counters (shown on the ``Mailbox`` object, as Robotomail shows them).

Every message a mailbox sends through the API counts once against its UTC day and its UTC month
(``daily_send_count``, ``monthly_send_count``, kept on the ``mailboxes`` row with the day and month
they count). The limits are the mailbox's own (``PATCH /v1/mailboxes/{id}``: ``daily_send_limit``,
``monthly_send_limit``; null: the service's defaults ``SHIPMAIL_DAILY_SEND_LIMIT`` and
``SHIPMAIL_MONTHLY_SEND_LIMIT``). A send over either limit answers 429 ``rate_limit_error`` with
``Retry-After`` (seconds until the window resets) and the reset time in the message and details.
:func:`take` runs on the row read ``for_update`` (the mailbox is locked until the send's row is
committed, so concurrent sends of one mailbox never overshoot); :func:`give_back` undoes it when
the mail server did not take the message.
"""

from __future__ import annotations

import math
from datetime import datetime

from shipmail.config import Settings
from shipmail.http.errors import RateLimited, detail
from shipmail.mailboxes.models import Mailbox, day_of, month_of, usage
from shipmail.utc import as_utc


def _refusal(which: str, limit: int, reset: datetime, now: datetime) -> RateLimited:
    seconds = max(1, math.ceil((reset - now).total_seconds()))
    when = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
    error = RateLimited(
        f"The mailbox has sent its {which} limit of {limit} message(s); the limit resets at {when}.",
        retry_after=seconds,
        headers={},
    )
    error.details = [detail(f"{which}_send_limit", "send_limit_exceeded", f"resets at {when}")]
    return error


def take(row: Mailbox, settings: Settings, now: datetime) -> None:
    """Count one send on ``row`` (the caller commits); 429 when a limit is reached."""
    now = as_utc(now)
    current = usage(row, settings, now)
    if current.daily_count >= current.daily_limit:
        raise _refusal("daily", current.daily_limit, current.daily_reset, now)
    if current.monthly_count >= current.monthly_limit:
        raise _refusal("monthly", current.monthly_limit, current.monthly_reset, now)
    row.daily_send_count, row.send_day = current.daily_count + 1, day_of(now)
    row.monthly_send_count, row.send_month = current.monthly_count + 1, month_of(now)


def give_back(row: Mailbox, now: datetime) -> None:
    """Undo one :func:`take` of the same day (the caller commits)."""
    now = as_utc(now)
    if row.send_day == day_of(now) and row.daily_send_count > 0:
        row.daily_send_count -= 1
    if row.send_month == month_of(now) and row.monthly_send_count > 0:
        row.monthly_send_count -= 1
