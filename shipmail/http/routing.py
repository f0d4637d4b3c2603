"""Operations: one declaration gives a route, its checks and its OpenAPI entry.

Each feature's ``routes.py`` declares its operations with :func:`operation`; a handler is
``async def handler(ctx: Context[Body, Query]) -> BaseModel | Response | None``. For each request
the endpoint built by :func:`build_routes` (one function, no nested wrappers) does, in order:
authenticate the Bearer key (401), count the call against the key's rate-limit tier (429; the
``X-RateLimit-*`` headers go on every response after that, 403 included), check the operation's
scope (403), apply the key's mailbox limit (:func:`shipmail.auth.constraints.check_operation`:
404/403), read and validate the JSON body and the query (413/422), apply ``Idempotency-Key``
(:mod:`shipmail.http.idempotency`: a retry answers the stored response), open the request's
database session (the unit of work, ``ctx.session``), call the handler, render its model as JSON
(or 204 for ``None``). Every
:class:`~shipmail.http.errors.ShipmailError` becomes the error envelope; anything else is logged
with the request id and answers 500. The OpenAPI document (:mod:`shipmail.http.openapi`) is
generated from the same declarations.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pydantic
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipmail.auth.bearer import BearerAuth, Principal
from shipmail.auth.constraints import check_operation
from shipmail.auth.scopes import Scope
from shipmail.http import idempotency
from shipmail.http.errors import InternalError, NotFound, PayloadTooLarge, ShipmailError, ValidationFailed
from shipmail.http.idempotency import Idempotency
from shipmail.http.ratelimit import RateLimits, Tier, bucket_key
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.api")

B = TypeVar("B")
Q = TypeVar("Q")
M = TypeVar("M", bound=pydantic.BaseModel)


@dataclass
class Context(Generic[B, Q]):
    """What a handler gets: the request, the caller, the parsed input and the services."""

    request: Request
    principal: Principal | None
    body: B
    query: Q
    path: dict[str, str]
    request_id: str
    #: The request's unit of work: one database session, opened by the route before the handler
    #: runs and closed (rolled back unless committed) after it; services take it as an argument.
    session: AsyncSession

    @property
    def services(self) -> Services:
        services: Services = self.request.app.state.services
        return services

    @property
    def organization_id(self) -> str:
        assert self.principal is not None
        return self.principal.organization_id


Handler = Callable[[Context[Any, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    """One REST operation; ``scope=None`` means no authentication (public) unless
    ``authenticated``: then any valid key may call it (``x-scope: authenticated``)."""

    operation_id: str
    method: str
    path: str
    summary: str
    handler: Handler
    scope: Scope | None
    tier: Tier | None
    body: type[pydantic.BaseModel] | None = None
    query: type[pydantic.BaseModel] | None = None
    response: type[pydantic.BaseModel] | None = None
    status_code: int = 200
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""
    extra_responses: dict[str, Any] = field(default_factory=dict)
    authenticated: bool = False
    #: Media type of a body the handler streams itself (:func:`stream_body_to`), for the OpenAPI
    #: document; the pipeline reads no body for such an operation (``body`` must be None).
    raw_body: str | None = None
    #: How ``Idempotency-Key`` is treated (:mod:`shipmail.http.idempotency`).
    idempotency: Idempotency = Idempotency.IGNORED


class _Empty(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")


def operation(
    registry: list[Operation],
    method: str,
    path: str,
    *,
    operation_id: str,
    summary: str,
    scope: Scope | None,
    tier: Tier | None,
    body: type[pydantic.BaseModel] | None = None,
    query: type[pydantic.BaseModel] | None = None,
    response: type[pydantic.BaseModel] | None = None,
    status_code: int = 200,
    errors: Sequence[int] = (),
    tags: Sequence[str] = (),
    responses: dict[str, Any] | None = None,
    authenticated: bool = False,
    raw_body: str | None = None,
    idempotency: Idempotency | None = None,
) -> Callable[[Handler], Handler]:
    """Decorator: declare ``handler`` as an operation and append it to ``registry``.

    ``responses`` adds or replaces OpenAPI response objects by status code (for operations whose
    success is not a JSON model, such as a download: 200/206/304/416 with their media types).
    ``authenticated`` (with ``scope=None``): any valid API key, whatever its scopes.
    ``raw_body`` (a media type) declares a body the handler streams itself with
    :func:`stream_body_to` under its own size limit (an upload); the JSON limit
    (``SHIPMAIL_MAX_BODY_BYTES``) and parsing stay as they are for every other operation.
    ``idempotency``: how ``Idempotency-Key`` is treated; by default every authenticated POST,
    PUT, PATCH and DELETE honours it (:func:`shipmail.http.idempotency.default_for`); an
    operation answering a shown-once secret declares ``Idempotency.REFUSED``.
    """
    if raw_body is not None and body is not None:
        raise ValueError("an operation has a JSON body or a raw body, not both")

    def decorate(handler: Handler) -> Handler:
        registry.append(
            Operation(
                operation_id=operation_id,
                method=method.upper(),
                path=path,
                summary=summary,
                handler=handler,
                scope=scope,
                tier=tier,
                body=body,
                query=query,
                response=response,
                status_code=status_code,
                errors=tuple(errors),
                tags=tuple(tags),
                description=inspect.cleandoc(handler.__doc__ or ""),
                extra_responses=dict(responses or {}),
                authenticated=authenticated,
                raw_body=raw_body,
                idempotency=idempotency or idempotency_default(method, scope is not None or authenticated),
            )
        )
        return handler

    return decorate


def idempotency_default(method: str, authenticated: bool) -> Idempotency:
    """HONOURED for an authenticated mutating operation, IGNORED otherwise."""
    return idempotency.default_for(method, authenticated)


def request_id_of(request: Request) -> str:
    """The id the request-id middleware gave this request."""
    return str(request.scope.get("state", {}).get("request_id", "req_unknown"))


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def validation_details(exc: pydantic.ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Field-level details ``[{field, code, message}]``; never echoes the input value."""
    details = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = [p for p in err["loc"] if p not in ("function-after", "function-before")]
        name = _loc(loc)
        details.append({"field": f"{prefix}{name}" if prefix else name, "code": err["type"], "message": err["msg"]})
    return details


_DECIMAL = re.compile(r"[0-9]+")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes (413 beyond). A ``Content-Length`` (RFC 9110 section 8.6:
    ``1*DIGIT``, no upper bound) above the limit answers 413 before anything is read; one that is
    not ASCII digits is left to the server and the count of the bytes read."""
    declared = (request.headers.get("content-length") or "").strip()
    if _DECIMAL.fullmatch(declared) and _exceeds(declared, limit):
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def stream_body_to(request: Request, sink: Callable[[bytes], object], limit: int) -> int:
    """Stream the request body into ``sink`` (called with each chunk as it arrives: memory stays at
    one network chunk), at most ``limit`` bytes; the byte count. 413 before anything is read when
    ``Content-Length`` declares more, and as soon as more arrives. For operations declared with
    ``raw_body`` (uploads); the caller removes what ``sink`` wrote when this raises."""
    declared = (request.headers.get("content-length") or "").strip()
    if _DECIMAL.fullmatch(declared) and _exceeds(declared, limit):
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        if chunk:
            sink(chunk)
    return size


def _exceeds(digits: str, limit: int) -> bool:
    """Whether the ASCII decimal ``digits`` name a number above ``limit``, without turning more
    digits than any limit has into an int (Python refuses over 4,300: ``ValueError``)."""
    digits = digits.lstrip("0") or "0"
    return len(digits) > len(str(limit)) or int(digits) > limit


def _parse_body(raw: bytes, model: type[M]) -> M:
    if not raw.strip():
        raise ValidationFailed(
            "Request body is required.", details=[{"field": "body", "code": "missing", "message": "JSON body required"}]
        )
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationFailed(
            "Request body is not valid JSON.",
            details=[{"field": "body", "code": "json_invalid", "message": str(exc).split(":")[0]}],
        ) from None
    except RecursionError:
        raise ValidationFailed(
            "Request body is nested too deeply.",
            details=[{"field": "body", "code": "json_invalid", "message": "nested too deeply"}],
        ) from None
    except ValueError:  # json.loads: an integer beyond Python's int-string limit
        most = sys.get_int_max_str_digits()
        raise ValidationFailed(
            f"Request body is not valid JSON for this API: a number has more than {most} digits.",
            details=[{"field": "body", "code": "json_invalid", "message": f"a number has more than {most} digits"}],
        ) from None
    try:
        _refuse_nul(data, "")
    except RecursionError:
        raise ValidationFailed(
            "Request body is nested too deeply.",
            details=[{"field": "body", "code": "json_invalid", "message": "nested too deeply"}],
        ) from None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationFailed("Invalid request body.", details=validation_details(exc)) from None


def _refuse_nul(value: Any, where: str) -> None:
    """422 for a NUL character anywhere in ``value``: no field of the API can hold one (and
    PostgreSQL text cannot store it)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationFailed(
                "NUL characters are not allowed.",
                details=[{"field": where or "body", "code": "nul_character", "message": "contains a NUL character"}],
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key, where or "body")
            _refuse_nul(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nul(item, f"{where}[{index}]")


def _parse_query(request: Request, model: type[M]) -> M:
    values: dict[str, Any] = {}
    for key in request.query_params:
        items = request.query_params.getlist(key)
        values[key] = items if len(items) > 1 else items[0]
    _refuse_nul(values, "")
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        raise ValidationFailed("Invalid query parameters.", details=validation_details(exc)) from None


def render(model: pydantic.BaseModel | None, status_code: int) -> Response:
    """A handler's result as a response: JSON of the model, or an empty 204."""
    if model is None:
        return Response(status_code=204)
    return Response(model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json")


Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Pipeline:
    """What every operation's request goes through, in this order: authentication and the
    operation's scope (401/403, :class:`~shipmail.auth.bearer.BearerAuth`; the request is
    counted against the caller's rate-limit tier between the two: 429,
    :class:`~shipmail.http.ratelimit.RateLimits`; its ``X-RateLimit-*`` headers go on the
    response, errors included), the body (413 over ``max_body`` bytes, 422) and the query (422),
    ``Idempotency-Key`` (:mod:`shipmail.http.idempotency`), then the handler inside the
    request's database session."""

    auth: BearerAuth
    limits: RateLimits
    max_body: int


def _endpoint(op: Operation, pipeline: Pipeline) -> Endpoint:
    """The whole request path of ``op`` as one function: every :class:`ShipmailError` becomes the
    error envelope, anything else is logged with the request id and answers 500."""

    async def run(request: Request) -> Response:
        rate_headers: dict[str, str] = {}
        try:
            principal = None
            if op.scope is not None or op.authenticated:
                principal = await pipeline.auth.authenticate(request, None)
                request.state.principal = principal
                if op.tier is not None:
                    bucket = bucket_key(
                        op.tier, principal.key_id, principal.organization_id, request.path_params, op.operation_id
                    )
                    rate_headers = await pipeline.limits.check(op.tier, bucket)
                if op.scope is not None:
                    pipeline.auth.require(principal, op.scope)
            elif op.tier is not None:  # public, limited per path (e.g. per one-time upload URL)
                where = "/".join(f"{k}={v}" for k, v in sorted(request.path_params.items()))
                rate_headers = await pipeline.limits.check(op.tier, f"public/{op.operation_id}/{where}")
            response = await _handle(op, request, principal, pipeline.max_body)
        except ShipmailError as exc:
            response = exc.response(request_id_of(request))
        except Exception:
            rid = request_id_of(request)
            logger.exception("unhandled error in %s (request %s)", op.operation_id, rid)
            response = InternalError("An unexpected error occurred.").response(rid)
        response.headers.update(rate_headers)
        return response

    return run


async def _handle(op: Operation, request: Request, principal: Principal | None, max_body: int) -> Response:
    for name, value in request.path_params.items():
        if "\x00" in str(value):
            raise NotFound(f"No object with {name} {str(value)!r}.")
    check_operation(principal, op.method, op.path, request.path_params)
    body: Any = None
    raw = b""
    if op.body is not None:
        raw = await _read_body(request, max_body)
        body = _parse_body(raw, op.body)
    query: Any = _parse_query(request, op.query) if op.query is not None else _Empty()
    services: Services = request.app.state.services
    key = idempotency.key_of(request, op.idempotency)
    if key is None or principal is None:
        return await _run(op, request, principal, body, query, services)
    print_ = idempotency.fingerprint(services.settings.secret_key, request, raw)
    claim = await idempotency.begin(services.db, principal.key_id, key, print_, op.operation_id)
    if isinstance(claim, Response):
        return claim
    try:
        try:
            response = await _run(op, request, principal, body, query, services)
        except ShipmailError as exc:
            response = exc.response(request_id_of(request))
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(idempotency.abandon(services.db, claim))
        raise
    try:
        await idempotency.finish(services.db, claim, response)
    except Exception:  # the work is done: answer it; the key stays claimed until it goes stale
        logger.exception("could not store the Idempotency-Key response of %s", op.operation_id)
    return response


async def _run(
    op: Operation, request: Request, principal: Principal | None, body: Any, query: Any, services: Services
) -> Response:
    """The handler inside the request's database session; its result as a response."""
    async with services.db.session() as session:
        ctx: Context[Any, Any] = Context(
            request=request,
            principal=principal,
            body=body,
            query=query,
            path=dict(request.path_params),
            request_id=request_id_of(request),
            session=session,
        )
        result = await op.handler(ctx)
    if isinstance(result, Response):
        return result
    return render(result, op.status_code)


def build_routes(operations: Sequence[Operation], pipeline: Pipeline, *, prefix: str) -> list[Route]:
    """Starlette routes for ``operations``: one Route per path, dispatching on the method
    (``HEAD`` is served by ``GET``)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for op in operations:
        by_path.setdefault(op.path, {})[op.method] = _endpoint(op, pipeline)
    return [Route(prefix + path, _dispatch(methods), methods=list(methods)) for path, methods in by_path.items()]


def _dispatch(methods: dict[str, Endpoint]) -> Endpoint:
    async def dispatch(request: Request) -> Response:
        method = request.method if request.method != "HEAD" else "GET"
        return await methods[method](request)

    return dispatch
