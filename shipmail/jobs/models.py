"""The ``jobs`` table: durable background work (:mod:`shipmail.jobs`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field

#: ``Job.state`` of a job waiting for its ``run_at`` (or running, when ``leased_until`` is ahead).
QUEUED = "queued"
#: ``Job.state`` of a job that gave up (:class:`shipmail.jobs.Fail`, or too many attempts); kept for
#: inspection, never run again.
FAILED = "failed"


class Job(SQLModel, table=True):
    """One unit of background work.

    ``id`` increases with every enqueue: jobs with the same ``ordering_key`` run one at a time in
    ``id`` order. ``key`` (unique when set) names a job so it can be found again (deduplicated,
    rescheduled, cancelled). ``leased_until`` is set while a worker runs the job; a job whose lease
    ran out (its worker died) is run again: at least once, never lost. A job that succeeds is
    deleted.
    """

    __tablename__ = "jobs"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64, index=True)
    key: str | None = Field(default=None, max_length=200, unique=True)
    ordering_key: str | None = Field(default=None, max_length=200, index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON(), nullable=False))
    state: str = Field(default=QUEUED, max_length=16, index=True)
    run_at: datetime = timestamp_field(index=True)
    attempts: int = Field(default=0)
    leased_until: datetime | None = timestamp_field(nullable=True)
    lease_owner: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = timestamp_field()
