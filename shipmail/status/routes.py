"""``GET /v1/status``: public health of the API's database and of each part of its mail server.
Wire models: :mod:`shipmail.status.schemas`.

Each answer reuses probe results younger than :data:`CACHE_SECONDS`, and requests arriving while a
probe runs wait for that one, so the endpoint can be polled often: at most one round of probes
per :data:`CACHE_SECONDS` per API process. Every probe is bounded (the database by
:data:`DATABASE_TIMEOUT`, the mail server's by its own, about a second), so a component that hangs
reports ``down`` rather than holding the request: a component that dies shows as ``down`` (HTTP
503) within ``CACHE_SECONDS`` plus one probe timeout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from starlette.responses import JSONResponse

from shipmail import utc
from shipmail.http.routing import Context, Operation, operation
from shipmail.mailserver.base import MailHealth
from shipmail.runtime import Services
from shipmail.status.schemas import Components, ComponentStatus, StatusResponse

operations: list[Operation] = []

#: How long one round of probe results is reused, in seconds.
CACHE_SECONDS = 0.5
#: Longest wait for the database's ``SELECT 1``, in seconds.
DATABASE_TIMEOUT = 1.0
#: ``Retry-After`` (seconds) of a 503: about what ``shipmail serve`` needs to restart a part.
RETRY_AFTER = 5


@dataclass(frozen=True)
class Health:
    database: bool
    mail: MailHealth

    @property
    def all_up(self) -> bool:
        return self.database and self.mail.all_up


class HealthCache:
    """The last :class:`Health`, reused for :data:`CACHE_SECONDS`; one probe round at a time."""

    def __init__(self) -> None:
        self._value: Health | None = None
        self._at = 0.0
        self._pending: asyncio.Future[Health] | None = None

    async def get(self, svc: Services) -> Health:
        if self._value is not None and time.monotonic() - self._at < CACHE_SECONDS:
            return self._value
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._probe(svc))
        return await asyncio.shield(self._pending)

    async def _probe(self, svc: Services) -> Health:
        async def database() -> bool:
            try:
                async with asyncio.timeout(DATABASE_TIMEOUT):
                    return await svc.db.ping()
            except TimeoutError:
                return False

        db_up, mail = await asyncio.gather(database(), svc.mail.health())
        self._value, self._at = Health(db_up, mail), time.monotonic()
        return self._value


def _cache(ctx: Context[None, None]) -> HealthCache:
    state = ctx.request.app.state
    cache: HealthCache | None = getattr(state, "status_health", None)
    if cache is None:
        cache = state.status_health = HealthCache()
    return cache


def _state(up: bool) -> ComponentStatus:
    return ComponentStatus(status="up" if up else "down")


@operation(
    operations,
    "GET",
    "/status",
    operation_id="getStatus",
    summary="Get API status",
    scope=None,
    tier=None,
    response=StatusResponse,
    errors=(503,),
    tags=("Status",),
)
async def get_status(ctx: Context[None, None]) -> JSONResponse:
    """Public health check (no authentication): 200 when the database and every part of the mail
    server (JMAP, IMAP, LMTP, login checker) answer; 503 with ``Retry-After`` (same body,
    ``status: degraded``) when any of them is down."""
    health = await _cache(ctx).get(ctx.services)
    body = StatusResponse(
        status="operational" if health.all_up else "degraded",
        version="v1",
        time=utc.now(),
        request_id=ctx.request_id,
        components=Components(
            database=_state(health.database),
            jmap=_state(health.mail.jmap),
            imap=_state(health.mail.imap),
            lmtp=_state(health.mail.lmtp),
            login_checker=_state(health.mail.login_checker),
        ),
    )
    headers = {"Cache-Control": "no-store"}
    if not health.all_up:
        headers["Retry-After"] = str(RETRY_AFTER)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if health.all_up else 503, headers=headers)
