"""The export jobs (:mod:`shipmail.jobs`): ``exports.run`` writes an export, ``exports.expire``
deletes its file after the retention period."""

from __future__ import annotations

from shipmail.exports import service
from shipmail.jobs import Handler, Job
from shipmail.runtime import Services


async def run(job: Job, services: Services) -> None:
    await service.run(services, str(job.payload["export_id"]), attempt=job.attempts)


async def expire(job: Job, services: Services) -> None:
    await service.expire(services, str(job.payload["export_id"]))


handlers: dict[str, Handler] = {service.JOB_RUN: run, service.JOB_EXPIRE: expire}
