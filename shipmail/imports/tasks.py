"""The import jobs (:mod:`shipmail.jobs`): ``imports.run`` runs or resumes an import,
``imports.undo`` removes what it added, ``imports.purge_staged`` (periodic, hourly) deletes staged
files never used."""

from __future__ import annotations

from shipmail import jobs
from shipmail.imports import service
from shipmail.jobs import Handler, Job
from shipmail.runtime import Services

#: Seconds between two sweeps of unused staged files.
PURGE_PERIOD = 3600.0


async def run(job: Job, services: Services) -> None:
    await service.run(services, str(job.payload["import_id"]), attempt=job.attempts)


async def undo(job: Job, services: Services) -> None:
    await service.run_undo(services, str(job.payload["import_id"]))


async def purge_staged(job: Job, services: Services) -> None:
    await service.purge_staged(services)
    raise jobs.Retry(after=PURGE_PERIOD, reason="periodic")


handlers: dict[str, Handler] = {
    service.JOB_RUN: run,
    service.JOB_UNDO: undo,
    service.JOB_PURGE: purge_staged,
}
