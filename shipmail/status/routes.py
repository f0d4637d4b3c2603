"""``GET /v1/status``: public health of the API, its database and its mail server. Wire models:
:mod:`shipmail.status.schemas`."""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse

from shipmail import utc
from shipmail.http.routing import Context, Operation, operation
from shipmail.status.schemas import Components, ComponentStatus, StatusResponse

operations: list[Operation] = []


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
    """Public health check (no authentication): 200 when the database and the mail server answer,
    503 (same body, ``status: degraded``) when either is down."""
    svc = ctx.services
    db_up, mail_up = await asyncio.gather(svc.db.ping(), svc.mail.ping())
    body = StatusResponse(
        status="operational" if db_up and mail_up else "degraded",
        version="v1",
        time=utc.now(),
        request_id=ctx.request_id,
        components=Components(
            database=ComponentStatus(status="up" if db_up else "down"),
            mail_server=ComponentStatus(status="up" if mail_up else "down"),
        ),
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=200 if db_up and mail_up else 503,
        headers={"Cache-Control": "no-store"},
    )
