"""Background work of the domains feature (:mod:`shipmail.jobs`): the periodic DNS re-check.

``domains.recheck`` is one periodic job (key ``domains.recheck``): each run re-checks at most
``SHIPMAIL_DOMAIN_RECHECK_BATCH`` domains whose last check is older than
``SHIPMAIL_DOMAIN_RECHECK_SECONDS`` (:func:`shipmail.domains.service.recheck_due`: a verified domain
whose MX or ownership record went away becomes ``degraded``), then runs again after
:func:`~shipmail.domains.service.recheck_period` seconds (a minute at most). So the DNS traffic is
bounded: one batch per period per deployment, whatever the number of workers (the job has one
runner at a time). Creating or verifying a domain enqueues it
(:func:`~shipmail.domains.service.ensure_recheck_scheduled`).
"""

from __future__ import annotations

import logging

from shipmail import jobs
from shipmail.domains import service
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.domains")


async def recheck(job: jobs.Job, services: Services) -> None:
    """One run of the periodic re-check; always scheduled again (:class:`jobs.Retry`), also after
    an unexpected error (logged), so the periodic job never ends as failed."""
    checked = 0
    after = service.recheck_period(services.settings)
    try:
        async with services.db.session() as session:
            checked = await service.recheck_due(session, services.settings)
    except Exception:
        logger.exception("the periodic domain re-check failed; it runs again in %g s", after)
    raise jobs.Retry(after=after, reason=f"periodic: {checked} domain(s) checked")


handlers: dict[str, jobs.Handler] = {service.RECHECK_KIND: recheck}
