"""Durable background work: a job queue in the service's own database, run by workers with leases.

Features use it for everything that happens outside a request: sending queued mail, webhook
attempts, scheduled sends and deletions, export/import runs, periodic re-checks. The queue lives in
the database the service already has (SQLite embedded, PostgreSQL scaled out), so a job is enqueued
in the SAME transaction as the feature's own rows: it exists exactly when they do.

Use::

    from shipmail import jobs

    # in a request or another job, inside the caller's session; the caller commits
    await jobs.enqueue(session, "webhooks.attempt", {"delivery_id": d.id}, ordering_key=f"mbx:{m}")
    await jobs.enqueue(session, "mailboxes.purge", {"id": m}, key=f"purge:{m}", run_at=when)
    await jobs.cancel(session, f"purge:{m}")            # restored before the date

    # a handler (registered by composition: shipmail/tasks.py maps kind -> handler)
    async def attempt(job: jobs.Job, services: Services) -> None:
        ...                                              # opens its own sessions
        raise jobs.Retry(after=30, reason="HTTP 503")    # run again later
        raise jobs.Fail("receiver gone")                 # give up, kept as state "failed"

Guarantees:

* **Durable, at least once.** A worker leases a job (``leased_until``, renewed while the handler
  runs) before running it, and deletes it when the handler returns. A worker killed mid-job leaves
  the lease to expire (:data:`LEASE_SECONDS`), then the job runs again: handlers must be
  idempotent or tolerate a repeat.
* **Exactly one runner per attempt** across processes and machines: the claim is one write
  transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``FOR UPDATE SKIP LOCKED``).
* **Order per ordering key.** Jobs with the same ``ordering_key`` run one at a time in enqueue
  order; a later one waits while an earlier one is queued, running or backing off.
* **Retry.** :class:`Retry` reschedules after its delay; any other exception is retried with
  exponential back-off (:func:`backoff`) up to :data:`MAX_ATTEMPTS`, then the job is failed.
  :class:`Fail` gives up at once. Failed jobs stay (``state="failed"``, ``last_error``).
* **Periodic work** is one job that never finishes: its handler ends with ``raise Retry(after=
  period)``. (``enqueue`` with the key of a job that is running returns that job: enqueueing
  "again" from inside its own handler does not schedule another run.)
* **Latency.** A commit that enqueued a job wakes the workers of every process using the same
  database at once (:mod:`shipmail.db.wake`: the inbound gateway's process wakes the API's worker;
  on PostgreSQL, ``LISTEN``/``NOTIFY`` reaches other machines too); a worker also looks every poll
  interval (``SHIPMAIL_JOBS_POLL_INTERVAL``, default 0.5 s; a plain read), which bounds the latency
  while a wake-up is lost.

Why our own ~200 lines rather than a task-queue library: none found runs on both SQLite (the
embedded default) and PostgreSQL with leases (procrastinate and pgqueuer are PostgreSQL-only;
huey's Redis and SQLite queues pop a task before running it, so a kill -9 mid-task loses it; arq,
dramatiq, saq need Redis or PostgreSQL), and enqueueing inside the feature's own transaction needs
the queue in the same database.

Exception tree::

    JobError
     +-- Retry     run the job again after ``after`` seconds
     +-- Fail      give up: the job is kept as failed
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.db import wake
from shipmail.db.engine import begin_write
from shipmail.jobs.models import FAILED, QUEUED, Job
from shipmail.runtime import Services
from shipmail.utc import now as utcnow

__all__ = [
    "FAILED",
    "QUEUED",
    "Fail",
    "Handler",
    "Job",
    "JobError",
    "Retry",
    "Worker",
    "backoff",
    "cancel",
    "complete",
    "enqueue",
    "enqueue_many",
    "find",
]

logger = logging.getLogger("shipmail.jobs")

#: Seconds a claimed job stays leased to its worker; renewed every third of it while it runs.
LEASE_SECONDS = 60.0
#: Attempts after which a job failing with an unexpected exception is marked failed.
MAX_ATTEMPTS = 25
#: Longest back-off between two attempts of a failing job, in seconds.
MAX_BACKOFF = 3600.0

Handler = Callable[[Job, Services], Awaitable[None]]
"""``async def handler(job, services) -> None``: does the work of one job (its own sessions)."""


class JobError(Exception):
    """Raised by a handler to say what becomes of its job."""


class Retry(JobError):
    """Run the job again ``after`` seconds from now (``reason`` is kept as ``last_error``)."""

    def __init__(self, after: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {after:g} s")
        self.after = max(0.0, after)
        self.reason = reason


class Fail(JobError):
    """Give up on the job: it is kept with ``state="failed"`` and the message as ``last_error``."""


def backoff(attempts: int, *, base: float = 1.0, cap: float = MAX_BACKOFF) -> float:
    """Seconds to wait before attempt ``attempts + 1``: ``base * 2**(attempts-1)`` capped at
    ``cap``, with full jitter in its upper half (so retries of many jobs spread out)."""
    delay = min(cap, base * 2.0 ** max(0, attempts - 1))
    return float(delay / 2 + random.random() * delay / 2)


# ------------------------------------------------------------------------------------ enqueueing

#: Workers of this process, woken after a commit that enqueued a job.
_workers: weakref.WeakSet[Worker] = weakref.WeakSet()


def _wake_workers(_session: Any) -> None:
    for worker in list(_workers):
        worker.wake()


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: Mapping[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    key: str | None = None,
    ordering_key: str | None = None,
    replace: bool = False,
) -> Job:
    """Add a job to ``session`` (the caller commits; the job exists only if the commit does).

    ``payload`` must be JSON-serialisable (ids, not objects). ``run_at`` (default now) is when it
    may run first. With ``key``, a queued job of that key is returned instead of a new one, its
    ``run_at`` and ``payload`` replaced when ``replace`` (a failed one is replaced by a new one).
    ``ordering_key`` serialises jobs sharing it (see the module docstring).
    """
    when = run_at or utcnow()
    if key is not None:
        existing = await find(session, key)
        if existing is not None and existing.state == QUEUED:
            if replace:
                existing.run_at = when
                existing.payload = dict(payload or {})
                session.add(existing)
            return existing
        if existing is not None:
            await session.delete(existing)
            await session.flush()
    job = Job(
        kind=kind,
        key=key,
        ordering_key=ordering_key,
        payload=dict(payload or {}),
        run_at=when,
        created_at=utcnow(),
    )
    session.add(job)
    _wake_after_commit(session)
    return job


def _wake_after_commit(session: AsyncSession) -> None:
    sync = session.sync_session
    if not event.contains(sync, "after_commit", _wake_workers):
        event.listen(sync, "after_commit", _wake_workers, once=True)
    wake.after_commit(session, wake.JOBS)


async def enqueue_many(session: AsyncSession, kind: str, jobs: Sequence[tuple[Mapping[str, Any], str | None]]) -> None:
    """Add one job of ``kind`` per ``(payload, ordering_key)`` of ``jobs``, due now, in one
    ``INSERT`` (the caller commits): :func:`enqueue` without ``key`` or ``run_at``, for many jobs
    at once and without an ORM object each (a batch of them costs about one). Their ids
    follow the order of ``jobs``."""
    if not jobs:
        return
    when = utcnow()
    rows = [
        {
            "kind": kind,
            "key": None,
            "ordering_key": ordering_key,
            "payload": dict(payload),
            "state": QUEUED,
            "run_at": when,
            "attempts": 0,
            "leased_until": None,
            "lease_owner": None,
            "last_error": None,
            "created_at": when,
        }
        for payload, ordering_key in jobs
    ]
    await session.exec(_INSERT, params=rows)
    _wake_after_commit(session)


_TABLE: sa.Table = Job.__table__  # type: ignore[attr-defined]
#: Built once: a statement object keeps its compiled cache key.
_INSERT = sa.insert(_TABLE)
_DELETE_MINE = sa.delete(_TABLE).where(
    _TABLE.c.id == sa.bindparam("job_id"), _TABLE.c.lease_owner == sa.bindparam("owner")
)
_RETRY_MINE = (
    sa.update(_TABLE)
    .where(_TABLE.c.id == sa.bindparam("job_id"), _TABLE.c.lease_owner == sa.bindparam("owner"))
    .values(
        run_at=sa.bindparam("when", type_=_TABLE.c.run_at.type),
        leased_until=None,
        lease_owner=None,
        last_error=sa.bindparam("error", type_=_TABLE.c.last_error.type),
    )
)
_FAIL_MINE = (
    sa.update(_TABLE)
    .where(_TABLE.c.id == sa.bindparam("job_id"), _TABLE.c.lease_owner == sa.bindparam("owner"))
    .values(
        state=FAILED,
        leased_until=None,
        lease_owner=None,
        last_error=sa.bindparam("error", type_=_TABLE.c.last_error.type),
    )
)
_DELETE_QUEUED = sa.delete(_TABLE).where(_TABLE.c.id.in_(sa.bindparam("ids", expanding=True)), _TABLE.c.state == QUEUED)
#: ``(id, lease owner)`` of jobs whose handler deleted them in its own committed transaction
#: (:func:`complete`): their worker has nothing left to settle.
_completed: set[tuple[int, str | None]] = set()


async def complete(session: AsyncSession, job: Job, also: Sequence[int] = ()) -> None:
    """Delete ``job`` (the one the calling handler runs, unless another worker has claimed it since)
    and the queued jobs ``also`` in the caller's transaction (the caller commits): a handler that
    writes its results in one transaction ends its job in the same one, so a crash after that
    commit never runs it again. Once committed, the worker skips its own settling of ``job``.

    ``also`` is for the jobs a handler covers besides its own, such as the later jobs of the same
    ordering key (they cannot be claimed while ``job`` is queued before them, so no other
    worker runs them meanwhile)."""
    assert job.id is not None
    mine = (job.id, job.lease_owner)
    await session.exec(_DELETE_MINE, params={"job_id": job.id, "owner": job.lease_owner})
    if also:
        await session.exec(_DELETE_QUEUED, params={"ids": list(also)})
    event.listen(session.sync_session, "after_commit", lambda _s: _completed.add(mine), once=True)


async def find(session: AsyncSession, key: str) -> Job | None:
    """The job named ``key``, queued or failed; None if there is none (never was, or it ran)."""
    return (await session.exec(select(Job).where(Job.key == key))).first()


async def cancel(session: AsyncSession, key: str) -> bool:
    """Remove the queued job named ``key`` unless a worker is running it now. True if removed;
    False if there was none or it is running (its handler must then check the feature's own state,
    e.g. "cancelled", before acting)."""
    job = await find(session, key)
    if job is None or job.state != QUEUED:
        return False
    if job.leased_until is not None and job.leased_until > utcnow():
        return False
    await session.delete(job)
    return True


# --------------------------------------------------------------------------------------- running


class Worker:
    """Runs due jobs of the kinds in ``handlers`` until :meth:`stop`.

    One per process is enough (``concurrency`` jobs at once); any number of processes may run one
    on the same database. ``services`` is handed to every handler.
    """

    def __init__(
        self,
        services: Services,
        handlers: Mapping[str, Handler],
        *,
        poll_interval: float = 0.5,
        concurrency: int = 8,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.services = services
        self.handlers = dict(handlers)
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.owner = "wrk_" + secrets.token_hex(8)
        self._wakeup = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._statements: dict[str, tuple[Any, Any]] = {}

    def wake(self) -> None:
        """Look for due jobs now rather than at the next poll (from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wakeup.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wakeup.set)

    def start(self) -> None:
        """Run in the background of the current event loop."""
        _workers.add(self)
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self.run(), name="shipmail.jobs.worker")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming jobs, give running ones ``grace`` seconds, then cancel them (their leases
        run out and another worker, or the next start, runs them again)."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        running = list(self._running.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        _workers.discard(self)

    async def run(self) -> None:
        """Claim and start due jobs until stopped; then return (running jobs are left to stop)."""
        self._loop = asyncio.get_running_loop()
        lease_renewal = self._loop.create_task(self._renew_leases())
        listener = await wake.listen(self.services.db.url)
        self._unsubscribe = listener.subscribe(wake.JOBS, self._wakeup.set)
        try:
            while not self._stopping:
                self._wakeup.clear()
                started = 0
                free = self.concurrency - len(self._running)
                if free > 0 and self.handlers:
                    try:
                        for job in await self._claim(free):
                            self._start(job)
                            started += 1
                    except Exception:
                        logger.exception("could not claim jobs")
                if started and len(self._running) < self.concurrency:
                    continue  # there may be more due now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.poll_interval)
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
            lease_renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lease_renewal

    async def run_due(self) -> int:
        """Run every job due now, one by one, to completion (tests and the CLI); the number run."""
        count = 0
        while True:
            claimed = await self._claim(1)
            if not claimed:
                return count
            await self._execute(claimed[0])
            count += 1

    def _start(self, job: Job) -> None:
        assert job.id is not None
        job_id = job.id
        task = asyncio.get_running_loop().create_task(self._execute(job), name=f"shipmail.jobs.{job.kind}")
        self._running[job_id] = task
        task.add_done_callback(lambda _task: self._finished(job_id))

    def _finished(self, job_id: int) -> None:
        self._running.pop(job_id, None)
        self._wakeup.set()

    def _queries(self, dialect: str) -> tuple[Any, Any]:
        """``(any_due, due)``: the id of one due job, and the due jobs in order (locked with SKIP
        LOCKED on PostgreSQL), with parameters ``now`` and ``limit``. Built once per worker and
        dialect: a statement object keeps its compiled cache key, which costs more to compute
        than the query takes to run (measured: about half the worker's CPU per job)."""
        found = self._statements.get(dialect)
        if found is not None:
            return found
        now = sa.bindparam("now", type_=Job.__table__.c.run_at.type)  # type: ignore[attr-defined]
        earlier = sa.orm.aliased(Job)
        blocked = (
            select(earlier.id)
            .where(earlier.ordering_key == Job.ordering_key)
            .where(col(earlier.id) < col(Job.id))
            .where(earlier.state == QUEUED)
            .exists()
        )
        due_now = (
            Job.state == QUEUED,
            # Not IN (an expanding parameter): the point reader runs the statement as compiled.
            sa.or_(sa.false(), *(col(Job.kind) == kind for kind in self.handlers)),
            col(Job.run_at) <= now,
            sa.or_(col(Job.leased_until).is_(None), col(Job.leased_until) < now),
            sa.or_(col(Job.ordering_key).is_(None), ~blocked),
        )
        any_due = select(Job.id).where(*due_now).limit(1)
        due = select(Job).where(*due_now).order_by(col(Job.run_at), col(Job.id)).limit(sa.bindparam("limit"))
        if dialect == "postgresql":
            due = due.with_for_update(skip_locked=True, of=Job)
        self._statements[dialect] = (any_due, due)
        return any_due, due

    async def _claim(self, limit: int) -> list[Job]:
        now = utcnow()
        db = self.services.db
        any_due, due = self._queries(db.engine.dialect.name)
        # A plain read first: most polls find nothing due, and they must not take SQLite's write
        # lock (BEGIN IMMEDIATE) every poll interval, which would make requests wait. A point read
        # (on SQLite on the event loop, no thread hop: measured, the read through the session's
        # thread cost about a third of a claim's CPU).
        if await db.reader.one(any_due, {"now": now}) is None:
            return []
        async with db.session() as session:
            await begin_write(session)
            jobs = list((await session.exec(due, params={"now": now, "limit": limit})).all())
            until = now + timedelta(seconds=self.lease_seconds)
            for job in jobs:
                job.leased_until = until
                job.lease_owner = self.owner
                job.attempts += 1
                session.add(job)
            await session.commit()
            return jobs

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            ids = list(self._running)
            if not ids:
                continue
            try:
                async with self.services.db.session() as session:
                    await session.exec(
                        sa.update(Job)
                        .where(col(Job.id).in_(ids))
                        .where(col(Job.lease_owner) == self.owner)
                        .values(leased_until=utcnow() + timedelta(seconds=self.lease_seconds))
                    )
                    await session.commit()
            except Exception:
                logger.exception("could not renew job leases")

    async def _execute(self, job: Job) -> None:
        handler = self.handlers[job.kind]
        outcome: Retry | Fail | None = None
        try:
            await handler(job, self.services)
        except Retry as exc:
            outcome = exc
        except Fail as exc:
            outcome = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("job %s (%s) failed on attempt %d", job.id, job.kind, job.attempts)
            reason = f"{type(exc).__name__}: {exc}"
            outcome = Fail(reason) if job.attempts >= MAX_ATTEMPTS else Retry(backoff(job.attempts), reason)
        mine = (job.id, job.lease_owner)
        if mine in _completed:
            _completed.discard(mine)
            if outcome is None:
                return  # deleted by the handler's own transaction (complete)
        await self._settle(job, outcome)

    async def _settle(self, job: Job, outcome: Retry | Fail | None) -> None:
        mine = {"job_id": job.id, "owner": self.owner}
        try:
            async with self.services.db.session() as session:
                if outcome is None:
                    await session.exec(_DELETE_MINE, params=mine)
                elif isinstance(outcome, Retry):
                    error = (outcome.reason or None) and outcome.reason[:1000]
                    when = utcnow() + timedelta(seconds=outcome.after)
                    await session.exec(_RETRY_MINE, params={**mine, "when": when, "error": error})
                else:
                    logger.warning("job %s (%s) failed for good: %s", job.id, job.kind, outcome)
                    await session.exec(_FAIL_MINE, params={**mine, "error": str(outcome)[:1000]})
                await session.commit()
        except Exception:
            logger.exception("could not record the outcome of job %s (%s); its lease will run out", job.id, job.kind)
