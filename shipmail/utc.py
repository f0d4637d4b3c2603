"""Time in UTC: the one place naive datetimes are given a zone.

Everything the service stores, compares or sends is timezone-aware UTC. A naive datetime that
reaches the service (a client's ``2026-12-20T00:00:00`` without an offset) means UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def now() -> datetime:
    """The current time, aware UTC, microsecond precision."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as aware UTC (naive means UTC). Raises OverflowError/ValueError when the
    conversion leaves the representable range (year 1 or 9999 with an offset)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def to_second(moment: datetime) -> datetime:
    """``moment`` as aware UTC with the fraction of a second dropped."""
    return as_utc(moment).replace(microsecond=0)


def ceil_second(moment: datetime) -> datetime:
    """The first whole second at or after ``moment``, aware UTC."""
    moment = as_utc(moment)
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def month_key(moment: datetime) -> str:
    """The UTC calendar month of ``moment`` as ``YYYY-MM`` (monthly counters)."""
    m = as_utc(moment)
    return f"{m.year:04d}-{m.month:02d}"
