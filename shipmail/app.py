"""The ASGI application: ``create_app(settings)``.

Middleware, outermost first: Starlette's ServerErrorMiddleware (500 envelope), the request-id
middleware (``X-Request-Id`` on every response), Starlette's ExceptionMiddleware (404/405 from the
router rendered as the envelope), then the router. Routes come from the operation declarations in
:mod:`shipmail.api`; the lifespan opens the database, the mail server client and the limiter.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipmail.auth.bearer import BearerAuth, Principal
from shipmail.config import Settings
from shipmail.db import wake
from shipmail.db.engine import Database, create_sync_engine
from shipmail.http.cursors import CursorCodec
from shipmail.http.errors import (
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ShipmailError,
    ValidationFailed,
)
from shipmail.http.openapi import build_document
from shipmail.http.ratelimit import RateLimits, Tier
from shipmail.http.routing import Pipeline, build_routes, request_id_of
from shipmail.jmap.client import JmapClient
from shipmail.jobs import Handler, Worker
from shipmail.keys import service as key_service
from shipmail.mailgun import routes as mailgun
from shipmail.mailserver.base import MailServer
from shipmail.messages import outbound
from shipmail.routes import OPERATIONS
from shipmail.runtime import Services
from shipmail.tasks import HANDLERS

logger = logging.getLogger("shipmail.app")

API_PREFIX = "/v1"


class RequestIdMiddleware:
    """Gives every request an id (``req_`` + 24 hex: 96 random bits from the process's Mersenne
    Twister, seeded from the OS at start; an id names a request in logs and error envelopes, it
    is no secret, so it needs no system call per request) and sets ``X-Request-Id`` on the
    response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{random.getrandbits(96):024x}"
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    rid = request_id_of(request)
    error: ShipmailError
    if exc.status_code == 404:
        error = NotFound(f"No route for {request.method} {request.url.path}.")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}.")
    elif exc.status_code == 413:
        error = PayloadTooLarge("Request body too large.")
    else:
        error = ValidationFailed(str(exc.detail))
        error.status_code = exc.status_code  # type: ignore[misc]
    response = error.response(rid)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def _server_error(request: Request, exc: Exception) -> Response:
    rid = request_id_of(request)
    logger.exception("unhandled error (request %s)", rid)
    return InternalError("An unexpected error occurred.").response(rid)


def default_mail_server(settings: Settings) -> MailServer:
    """The Cyrus instance under ``settings.cyrus_dir`` (started by ``shipmail serve``); mail it is
    handed (sandbox deliveries) goes through the inbound gateway on ``settings.lmtp_port``."""
    from shipmail.mailserver.cyrus import CyrusInstance
    from shipmail.mailserver.cyrus_server import CyrusMailServer

    return CyrusMailServer.from_instance(
        CyrusInstance.from_settings(settings), timeout=settings.jmap_timeout, lmtp_port=settings.lmtp_port
    )


def create_app(
    settings: Settings | None = None,
    *,
    mail_server: MailServer | None = None,
    mail_server_factory: Callable[[Settings], MailServer] | None = None,
    jmap_transport: httpx.AsyncBaseTransport | None = None,
    job_handlers: Mapping[str, Handler] | None = None,
) -> Starlette:
    """The API application for ``settings`` (default: from the environment).

    ``mail_server`` (or ``mail_server_factory``, called in the lifespan) replaces the Cyrus
    instance under the data dir; ``jmap_transport`` carries the JMAP traffic (unit tests give an
    ``httpx.MockTransport``). The lifespan runs a background job worker
    (:class:`shipmail.jobs.Worker`) for ``job_handlers`` (default: every feature's,
    :data:`shipmail.tasks.HANDLERS`) unless ``settings.jobs_worker`` is off.
    """
    handlers = HANDLERS if job_handlers is None else job_handlers
    settings = settings or Settings.from_env()
    limits = RateLimits(
        settings.ratelimit_storage,
        {
            Tier.READ: settings.ratelimit_read,
            Tier.WRITE: settings.ratelimit_write,
            Tier.VERIFICATION: settings.ratelimit_verification,
            Tier.SEND: settings.ratelimit_send,
        },
    )
    document = build_document(OPERATIONS)

    # The key lookup runs in authlib's worker thread (see shipmail.auth.bearer) for a key not in
    # BearerAuth's cache (KEY_CACHE_SECONDS): one SELECT on a synchronous engine of its own.
    key_engine = create_sync_engine(settings.database_url)

    def lookup(key: str) -> Principal | None:
        with key_engine.connect() as conn:
            return key_service.principal_for(conn, settings.secret_key, key)

    auth = BearerAuth(lookup)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        db = Database(settings.database_url)
        mail = mail_server or (mail_server_factory or default_mail_server)(settings)
        http = None
        transport = jmap_transport or mail.jmap_transport()
        if transport is not None:
            http = httpx.AsyncClient(
                transport=transport,
                timeout=httpx.Timeout(settings.jmap_timeout, connect=min(1.0, settings.jmap_timeout)),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            )
        jmap = JmapClient(mail, timeout=settings.jmap_timeout, http=http)
        services = Services(settings=settings, db=db, mail=mail, jmap=jmap, cursors=CursorCodec(settings.secret_key))
        app.state.services = services
        worker = None
        if settings.jobs_worker and handlers:
            worker = Worker(services, handlers, poll_interval=settings.jobs_poll_interval)
            worker.start()
            if outbound.SPOOL_KIND in handlers:
                await outbound.ensure_spool_job(services)
        try:
            yield {}
        finally:
            if worker is not None:
                await worker.stop()
            wake.close_all()
            await jmap.aclose()
            if mail_server is None:
                await mail.aclose()
            await db.dispose()
            key_engine.dispose()
            await limits.aclose()

    document_bytes = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    async def openapi_json(request: Request) -> Response:
        return Response(document_bytes, media_type="application/json")

    pipeline = Pipeline(auth, limits, settings.max_body_bytes)
    routes = build_routes(OPERATIONS, pipeline, prefix=API_PREFIX)
    routes.append(Route(API_PREFIX + "/openapi.json", openapi_json, methods=["GET"]))
    # Mailgun's legacy Mailboxes API (/v3 and /v2), with its own OpenAPI document.
    mailgun_bytes = json.dumps(mailgun.build_document(), separators=(",", ":"), ensure_ascii=False).encode()

    async def mailgun_openapi_json(request: Request) -> Response:
        return Response(mailgun_bytes, media_type="application/json")

    routes.append(Route("/v3/openapi.json", mailgun_openapi_json, methods=["GET"]))
    routes += mailgun.build_routes(pipeline)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={HTTPException: _http_exception, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.limits = limits
    app.state.openapi = document
    return app
