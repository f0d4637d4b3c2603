"""Mailgun's legacy Mailboxes API on our mailbox service: the routes and their OpenAPI document.

Operations (``{v}`` is ``v3`` or ``v2``, the same; ``{domain}`` one of the caller's domains):

- ``GET /{v}/{domain}/mailboxes?limit=100&skip=0``: :func:`shipmail.mailboxes.service.offset_page`,
  answers ``{"total_count", "items": [{"mailbox", "created_at", "size_bytes"}]}``;
- ``POST /{v}/{domain}/mailboxes`` with ``mailbox``, ``password``:
  :func:`shipmail.mailboxes.service.create`, answers ``{"message": "Created 1 mailboxes"}``;
- ``PUT /{v}/{domain}/mailboxes/{mailbox}`` with ``password``:
  :func:`shipmail.mailboxes.service.reset_password`, answers ``{"message": "Password changed"}``;
- ``DELETE /{v}/{domain}/mailboxes/{mailbox}``: :func:`shipmail.mailboxes.service.delete`,
  answers ``{"message": "Mailbox has been deleted", "spec": "<address>"}``.

Authentication: HTTP Basic ``api:<API key>`` (our ``sm_live_...`` keys,
:meth:`shipmail.auth.bearer.BearerAuth.authenticate_basic`), with the scopes of our mailbox
operations (``mailboxes:read`` for the list, ``mailboxes:write`` for the rest) and their rate-limit
tiers. Bodies: ``application/x-www-form-urlencoded``, ``multipart/form-data`` or a JSON object.
``mailbox`` is a local part (``bob.bar``) or a whole address on ``{domain}``.

Errors are Mailgun's ``{"message": "..."}``: 400 for what our API answers 422 or 409 (invalid
input, weak password, an address that exists), 401 bad credentials (``WWW-Authenticate: Basic``),
403 missing scope or the organisation's mailbox limit, 404 unknown domain or mailbox, 413, 429,
503 as ours. The rules (password policy, argon2id-only storage, provisioning) are the mailbox
service's: this module has none of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from email.utils import format_datetime
from typing import Any, TypeVar

import pydantic
from pydantic.json_schema import models_json_schema
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shipmail import __version__, utc
from shipmail.auth.bearer import Principal
from shipmail.auth.scopes import Scope
from shipmail.domains import service as domains
from shipmail.http.errors import NotFound, PayloadTooLarge, ShipmailError
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Pipeline
from shipmail.mailboxes import lifecycle
from shipmail.mailboxes import service as mailboxes
from shipmail.mailgun.schemas import (
    CreateMailboxForm,
    ListQuery,
    MailgunDeleted,
    MailgunMailbox,
    MailgunMailboxList,
    MailgunMessage,
    PasswordForm,
)
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.mailgun")

#: The API versions served, the same operations under each.
VERSIONS = ("v3", "v2")

F = TypeVar("F", bound=pydantic.BaseModel)

#: Our statuses as Mailgun answers them: validation problems and conflicts are 400 there.
_STATUS = {422: 400, 409: 400, 405: 405}


class BadRequest(ShipmailError):
    """400 in Mailgun's words (a missing parameter, a mailbox of another domain)."""

    status_code = 400
    error_type = "validation_error"


def _error(exc: ShipmailError) -> JSONResponse:
    status = _STATUS.get(exc.status_code, exc.status_code)
    message = exc.message
    if exc.details and status == 400:
        message = message + " " + "; ".join(f"{d['field']}: {d['message']}" for d in exc.details)
    headers = {k: v for k, v in exc.headers.items() if k.lower() != "www-authenticate"}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = 'Basic realm="MG API"'
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def rfc2822(moment: Any) -> str:
    """``Tue, 27 Sep 2011 20:24:22 GMT``: the RFC 2822 date of ``moment`` in GMT."""
    return format_datetime(utc.as_utc(moment), usegmt=True)


def _problem(exc: pydantic.ValidationError) -> BadRequest:
    err = exc.errors(include_input=False, include_url=False)[0]
    name = ".".join(str(p) for p in err["loc"]) or "body"
    if err["type"] == "missing":
        return BadRequest(f"'{name}' parameter is missing")
    return BadRequest(f"'{name}' parameter is invalid: {err['msg']}")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = (request.headers.get("content-length") or "").strip()
    if declared.isdigit() and len(declared) <= 20 and int(declared) > limit:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's form parser reads the cached body
    return body


async def _form(request: Request, model: type[F], limit: int) -> F:
    """The body as ``model``: form fields (urlencoded or multipart) or a JSON object; 400 for
    anything else, a file where a field belongs, or a missing or invalid field."""
    raw = await _read_body(request, limit)
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    values: dict[str, Any] = {}
    if media in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.form()
        except Exception:
            raise BadRequest("The form body cannot be parsed.") from None
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise BadRequest(f"'{name}' parameter must be a text field, not a file")
            values.setdefault(name, value)
    elif media == "application/json" or (not media and raw.strip().startswith(b"{")):
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadRequest("The JSON body cannot be parsed.") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise BadRequest("The JSON body must be an object of text fields.")
        values = data
    elif raw.strip():
        raise BadRequest("Send the parameters as a form (urlencoded or multipart) or a JSON object.")
    if any("\x00" in str(v) for v in values.values()):
        raise BadRequest("Parameters must not contain NUL characters.")
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        raise _problem(exc) from None


def _local_part(mailbox: str, domain_name: str) -> str:
    """``bob.bar`` of ``bob.bar`` or ``bob.bar@<domain>``; 400 for an address on another domain."""
    local, at, other = mailbox.strip().rpartition("@")
    if not at:
        return mailbox.strip()
    try:
        same = domains.normalize_domain_name(other) == domain_name
    except ValueError:
        same = False
    if not same:
        raise BadRequest(f"The mailbox {mailbox} is not on the domain {domain_name}.")
    return local


Work = Callable[[Request, Principal, AsyncSession, Services], Awaitable[pydantic.BaseModel]]


def _endpoint(pipeline: Pipeline, scope: Scope, tier: Tier, work: Work) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        rate_headers: dict[str, str] = {}
        try:
            principal = await pipeline.auth.authenticate_basic(request, scope)
            rate_headers = await pipeline.limits.check(tier, principal.key_id)
            services: Services = request.app.state.services
            async with services.db.session() as session:
                result = await work(request, principal, session, services)
            response: Response = JSONResponse(result.model_dump(mode="json"))
        except ShipmailError as exc:
            response = _error(exc)
        except Exception:
            logger.exception("unhandled error in the Mailgun-compatible API")
            response = JSONResponse({"message": "An unexpected error occurred."}, status_code=500)
        response.headers.update(rate_headers)
        return response

    return run


async def _list(request: Request, principal: Principal, session: AsyncSession, svc: Services) -> MailgunMailboxList:
    try:
        query = ListQuery.model_validate(dict(request.query_params))
    except pydantic.ValidationError as exc:
        raise _problem(exc) from None
    domain = await domains.get_by_name(session, principal.organization_id, request.path_params["domain"])
    rows, total = await mailboxes.offset_page(session, principal.organization_id, domain.id, query.skip, query.limit)
    used = await lifecycle.usage(svc, rows)
    items = [
        MailgunMailbox(mailbox=r.address, created_at=rfc2822(r.created_at), size_bytes=used.get(r.address))
        for r in rows
    ]
    return MailgunMailboxList(total_count=total, items=items)


async def _create(request: Request, principal: Principal, session: AsyncSession, svc: Services) -> MailgunMessage:
    domain = await domains.get_by_name(session, principal.organization_id, request.path_params["domain"])
    form = await _form(request, CreateMailboxForm, svc.settings.max_body_bytes)
    await mailboxes.create(
        svc,
        session,
        principal.organization_id,
        domain_id=domain.id,
        local_part=_local_part(form.mailbox, domain.name),
        display_name=None,
        password=form.password,
    )
    return MailgunMessage(message="Created 1 mailboxes")


async def _address(request: Request, principal: Principal, session: AsyncSession) -> str:
    domain = await domains.get_by_name(session, principal.organization_id, request.path_params["domain"])
    try:
        local = _local_part(request.path_params["mailbox"], domain.name)
    except BadRequest:
        raise NotFound(f"Mailbox not found: {request.path_params['mailbox']}") from None
    return f"{local.lower()}@{domain.name}"


async def _password(request: Request, principal: Principal, session: AsyncSession, svc: Services) -> MailgunMessage:
    address = await _address(request, principal, session)
    form = await _form(request, PasswordForm, svc.settings.max_body_bytes)
    row = await mailboxes.get_by_address(session, principal.organization_id, address)
    await mailboxes.reset_password(svc, session, principal.organization_id, row.id, form.password)
    return MailgunMessage(message="Password changed")


async def _delete(request: Request, principal: Principal, session: AsyncSession, svc: Services) -> MailgunDeleted:
    address = await _address(request, principal, session)
    row = await mailboxes.get_by_address(session, principal.organization_id, address)
    await mailboxes.delete(svc, session, principal.organization_id, row.id)
    return MailgunDeleted(message="Mailbox has been deleted", spec=address)


def build_routes(pipeline: Pipeline) -> list[Route]:
    """The routes of every version in :data:`VERSIONS`."""
    routes = []
    for version in VERSIONS:
        collection = {
            "GET": _endpoint(pipeline, Scope.MAILBOXES_READ, Tier.READ, _list),
            "POST": _endpoint(pipeline, Scope.MAILBOXES_WRITE, Tier.WRITE, _create),
        }
        member = {
            "PUT": _endpoint(pipeline, Scope.MAILBOXES_WRITE, Tier.WRITE, _password),
            "DELETE": _endpoint(pipeline, Scope.MAILBOXES_WRITE, Tier.WRITE, _delete),
        }
        routes.append(Route(f"/{version}/{{domain}}/mailboxes", _dispatch(collection), methods=list(collection)))
        routes.append(Route(f"/{version}/{{domain}}/mailboxes/{{mailbox}}", _dispatch(member), methods=list(member)))
    return routes


def _dispatch(methods: dict[str, Callable[[Request], Awaitable[Response]]]) -> Callable[[Request], Awaitable[Response]]:
    async def dispatch(request: Request) -> Response:
        return await methods["GET" if request.method == "HEAD" else request.method](request)

    return dispatch


# ------------------------------------------------------------------------------------ OpenAPI

TAG = "Mailgun compatibility"

_ERRORS = {
    "400": "Invalid parameters, a weak password, or a mailbox that exists.",
    "401": "Missing or invalid credentials (HTTP Basic api:<API key>).",
    "403": "The API key lacks the scope, or the organisation has reached its mailbox limit.",
    "404": "Unknown domain or mailbox.",
    "413": "Request body too large.",
    "429": "Rate limit exceeded.",
    "503": "The mail server is unavailable; retry.",
}


def _responses(model: type[pydantic.BaseModel], codes: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }
    for code in codes:
        out[code] = {
            "description": _ERRORS[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MailgunMessage"}}},
        }
    return out


def _body(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": ref},
            "multipart/form-data": {"schema": ref},
            "application/json": {"schema": ref},
        },
    }


def _params(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 253}}
        for n in names
    ]


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the Mailgun-compatible routes (served at ``/v3/openapi.json``,
    apart from our own ``/v1/openapi.json``)."""
    models: list[type[pydantic.BaseModel]] = [
        CreateMailboxForm,
        PasswordForm,
        MailgunMailboxList,
        MailgunMessage,
        MailgunDeleted,
    ]
    keyed = [(m, "validation" if m in (CreateMailboxForm, PasswordForm) else "serialization") for m in models]
    _, schema = models_json_schema(keyed, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    paths: dict[str, Any] = {}
    list_params = [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in ListQuery.model_json_schema()["properties"].items()
    ]
    for version in VERSIONS:
        common = {"tags": [TAG]}
        paths[f"/{version}/{{domain}}/mailboxes"] = {
            "get": {
                **common,
                "operationId": f"mailgunListMailboxes{version.upper()}",
                "summary": "List the domain's mailboxes (Mailgun)",
                "x-scope": Scope.MAILBOXES_READ.value,
                "x-rate-limit-tier": Tier.READ.value,
                "parameters": _params("domain") + list_params,
                "responses": _responses(MailgunMailboxList, ("400", "401", "403", "404", "429")),
            },
            "post": {
                **common,
                "operationId": f"mailgunCreateMailbox{version.upper()}",
                "summary": "Create a mailbox (Mailgun)",
                "x-scope": Scope.MAILBOXES_WRITE.value,
                "x-rate-limit-tier": Tier.WRITE.value,
                "parameters": _params("domain"),
                "requestBody": _body(CreateMailboxForm),
                "responses": _responses(MailgunMessage, ("400", "401", "403", "404", "413", "429", "503")),
            },
        }
        paths[f"/{version}/{{domain}}/mailboxes/{{mailbox}}"] = {
            "put": {
                **common,
                "operationId": f"mailgunChangeMailboxPassword{version.upper()}",
                "summary": "Change a mailbox's password (Mailgun)",
                "x-scope": Scope.MAILBOXES_WRITE.value,
                "x-rate-limit-tier": Tier.WRITE.value,
                "parameters": _params("domain", "mailbox"),
                "requestBody": _body(PasswordForm),
                "responses": _responses(MailgunMessage, ("400", "401", "403", "404", "413", "429", "503")),
            },
            "delete": {
                **common,
                "operationId": f"mailgunDeleteMailbox{version.upper()}",
                "summary": "Delete a mailbox (Mailgun)",
                "x-scope": Scope.MAILBOXES_WRITE.value,
                "x-rate-limit-tier": Tier.WRITE.value,
                "parameters": _params("domain", "mailbox"),
                "responses": _responses(MailgunDeleted, ("400", "401", "403", "404", "429", "503")),
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "shipmail: Mailgun-compatible Mailboxes API",
            "version": __version__,
            "description": "Mailgun's legacy Mailboxes API, wire-compatible, over shipmail's mailboxes.",
            "license": {"name": "GPL-3.0-or-later", "identifier": "GPL-3.0-or-later"},
        },
        "servers": [{"url": "/"}],
        "security": [{"basicAuth": []}],
        "tags": [{"name": TAG, "description": "Mailgun's legacy Mailboxes API (HTTP Basic api:<API key>)."}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic", "description": "User `api`, password an API key."}
            },
            "schemas": schema.get("$defs", {}),
        },
    }
