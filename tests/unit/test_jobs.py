"""shipmail.jobs: the durable job queue on SQLite and PostgreSQL (real databases, no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from shipmail import jobs
from shipmail.config import Settings
from shipmail.db.engine import Database
from shipmail.jobs import Job
from shipmail.runtime import Services
from shipmail.utc import now
from tests.dbfixtures import BACKENDS, migrated_database


@pytest.fixture(params=BACKENDS)
async def services(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Services]:
    with migrated_database(request.param, tmp_path) as url:
        db = Database(url)
        settings = Settings(data_dir=tmp_path, database_url=url, secret_key=b"k" * 32)
        try:
            yield Services(settings=settings, db=db, mail=None, jmap=None, cursors=None)  # type: ignore[arg-type]
        finally:
            await db.dispose()


async def _enqueue(services: Services, kind: str, payload: dict[str, Any], **kw: Any) -> None:
    async with services.db.session() as session:
        await jobs.enqueue(session, kind, payload, **kw)
        await session.commit()


async def _rows(services: Services) -> list[Job]:
    async with services.db.session() as session:
        return list((await session.exec(select(Job).order_by(Job.id))).all())  # type: ignore[arg-type]


async def test_a_committed_job_runs_once_and_is_deleted(services: Services) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(job: Job, _services: Services) -> None:
        seen.append(job.payload)

    await _enqueue(services, "t.run", {"n": 1})
    worker = jobs.Worker(services, {"t.run": handler})
    assert await worker.run_due() == 1
    assert await worker.run_due() == 0
    assert seen == [{"n": 1}]
    assert await _rows(services) == []


async def test_a_rolled_back_job_does_not_exist(services: Services) -> None:
    async with services.db.session() as session:
        await jobs.enqueue(session, "t.run", {})
        await session.rollback()
    assert await _rows(services) == []


async def test_retry_reschedules_and_fail_keeps_the_job(services: Services) -> None:
    calls = 0

    async def flaky(job: Job, _services: Services) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise jobs.Retry(after=0, reason="HTTP 503")
        raise jobs.Fail("gone for good")

    await _enqueue(services, "t.flaky", {})
    worker = jobs.Worker(services, {"t.flaky": flaky})
    assert await worker.run_due() == 2
    [row] = await _rows(services)
    assert (row.state, row.attempts, row.last_error) == (jobs.FAILED, 2, "gone for good")
    assert await worker.run_due() == 0


async def test_an_unexpected_exception_backs_off(services: Services) -> None:
    async def broken(job: Job, _services: Services) -> None:
        raise RuntimeError("boom")

    await _enqueue(services, "t.broken", {})
    before = now()
    assert await jobs.Worker(services, {"t.broken": broken}).run_due() == 1
    [row] = await _rows(services)
    assert row.state == jobs.QUEUED and row.last_error == "RuntimeError: boom"
    assert row.run_at > before and row.leased_until is None


async def test_future_jobs_wait_and_keys_deduplicate_reschedule_and_cancel(services: Services) -> None:
    later = now() + timedelta(hours=1)
    await _enqueue(services, "t.run", {"v": 1}, key="purge:a", run_at=later)
    await _enqueue(services, "t.run", {"v": 2}, key="purge:a", run_at=later)  # deduplicated
    [row] = await _rows(services)
    assert row.payload == {"v": 1}
    ran: list[Any] = []

    async def handler(job: Job, _services: Services) -> None:
        ran.append(job.payload)

    worker = jobs.Worker(services, {"t.run": handler})
    assert await worker.run_due() == 0
    await _enqueue(services, "t.run", {"v": 3}, key="purge:a", replace=True)  # now
    assert await worker.run_due() == 1 and ran == [{"v": 3}]
    await _enqueue(services, "t.run", {}, key="purge:b", run_at=later)
    async with services.db.session() as session:
        assert await jobs.cancel(session, "purge:b") is True
        assert await jobs.cancel(session, "purge:missing") is False
        await session.commit()
    assert await _rows(services) == []


async def test_jobs_of_one_ordering_key_run_in_order_one_at_a_time(services: Services) -> None:
    order: list[int] = []
    active: dict[str, int] = {}

    async def handler(job: Job, _services: Services) -> None:
        group = str(job.payload["g"])
        active[group] = active.get(group, 0) + 1
        assert active[group] == 1, "two jobs of one ordering key ran at once"
        await asyncio.sleep(0.01)
        order.append(int(job.payload["n"]))
        active[group] -= 1

    for n in range(6):
        await _enqueue(services, "t.ordered", {"g": "x", "n": n}, ordering_key="mbx:x")
    worker = jobs.Worker(services, {"t.ordered": handler}, poll_interval=0.05, concurrency=4)
    worker.start()
    try:
        for _ in range(200):
            if len(order) == 6:
                break
            await asyncio.sleep(0.02)
    finally:
        await worker.stop()
    assert order == list(range(6))


async def test_a_dead_workers_job_runs_again_after_its_lease(services: Services) -> None:
    """A worker that claimed a job and died (no outcome recorded) leaves it to another worker once
    the lease has run out: at least once, never lost."""
    await _enqueue(services, "t.run", {"n": 1})
    dead = jobs.Worker(services, {"t.run": lambda job, s: asyncio.sleep(0)}, lease_seconds=0.3)
    claimed = await dead._claim(5)  # claimed, then "killed": nothing settles it
    assert len(claimed) == 1
    ran: list[int] = []

    async def handler(job: Job, _services: Services) -> None:
        ran.append(job.attempts)

    other = jobs.Worker(services, {"t.run": handler})
    assert await other.run_due() == 0  # still leased
    await asyncio.sleep(0.4)
    assert await other.run_due() == 1
    assert ran == [2]


async def test_two_workers_on_two_connections_run_each_job_exactly_once(services: Services) -> None:
    ran: list[int] = []

    async def handler(job: Job, _services: Services) -> None:
        await asyncio.sleep(0.005)
        ran.append(int(job.payload["n"]))

    async with services.db.session() as session:
        for n in range(40):
            await jobs.enqueue(session, "t.run", {"n": n})
        await session.commit()
    second_db = Database(services.db.url)
    second = Services(settings=services.settings, db=second_db, mail=None, jmap=None, cursors=None)  # type: ignore[arg-type]
    workers = [
        jobs.Worker(services, {"t.run": handler}, poll_interval=0.05, concurrency=3),
        jobs.Worker(second, {"t.run": handler}, poll_interval=0.05, concurrency=3),
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in range(300):
            if len(ran) >= 40 and not await _rows(services):
                break
            await asyncio.sleep(0.05)
    finally:
        for worker in workers:
            await worker.stop()
        await second_db.dispose()
    assert sorted(ran) == list(range(40))


async def test_a_commit_wakes_the_worker_before_its_poll(services: Services) -> None:
    done = asyncio.Event()

    async def handler(job: Job, _services: Services) -> None:
        done.set()

    worker = jobs.Worker(services, {"t.run": handler}, poll_interval=30)
    worker.start()
    try:
        await asyncio.sleep(0.1)  # the first poll has happened: the next is 30 s away
        await _enqueue(services, "t.run", {})
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await worker.stop()


async def test_a_job_of_an_unknown_kind_is_left_alone(services: Services) -> None:
    await _enqueue(services, "other.kind", {})
    assert await jobs.Worker(services, {"t.run": lambda job, s: asyncio.sleep(0)}).run_due() == 0
    [row] = await _rows(services)
    assert row.attempts == 0


def test_backoff_grows_and_is_capped() -> None:
    assert 0.5 <= jobs.backoff(1) <= 1.0
    assert 4.0 <= jobs.backoff(4) <= 8.0
    assert jobs.backoff(40) <= jobs.MAX_BACKOFF


async def test_a_handler_completes_its_job_and_the_later_ones_in_its_own_transaction(services: Services) -> None:
    """``jobs.complete``: the handler deletes its own job and the queued jobs of the same ordering
    key behind it in the transaction of its work; a rolled-back transaction deletes nothing (the
    worker retries the job), and the later jobs are not run on their own once covered."""
    ran: list[int] = []
    fail_first = True

    async def covering(job: Job, svc: Services) -> None:
        nonlocal fail_first
        async with svc.db.session() as session:
            later = (
                await session.exec(
                    select(Job.id).where(Job.ordering_key == job.ordering_key, Job.id > job.id).order_by(Job.id)  # type: ignore[arg-type,operator]
                )
            ).all()
            await jobs.complete(session, job, [int(i) for i in later if i is not None])
            if fail_first:
                fail_first = False
                await session.rollback()
                raise jobs.Retry(after=0, reason="try again")
            ran.append(int(job.payload["n"]))
            await session.commit()

    for n in range(3):
        await _enqueue(services, "t.cover", {"n": n}, ordering_key="box")
    await _enqueue(services, "t.cover", {"n": 9}, ordering_key="other")
    worker = jobs.Worker(services, {"t.cover": covering})
    assert await worker.run_due() == 3  # the first (retried, then run again) and the other key's
    assert sorted(ran) == [0, 9]  # 1 and 2 never ran on their own
    assert await _rows(services) == []
