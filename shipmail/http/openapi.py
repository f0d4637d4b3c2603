"""The OpenAPI 3.1 document of what is implemented, generated from the operation declarations.

Components come from the pydantic models (``models_json_schema``); each operation carries its
``x-scope`` and ``x-rate-limit-tier`` like Shipmail's reference document. The committed copy lives
in ``openapi/openapi.json`` (``shipmail openapi --write`` refreshes it; a test keeps it in step).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic
from pydantic.json_schema import models_json_schema

from shipmail import __version__
from shipmail.http import idempotency
from shipmail.http.idempotency import Idempotency
from shipmail.http.routing import Operation
from shipmail.http.schemas import Error

REPO_SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"

_ERROR_DESCRIPTIONS = {
    401: "Authentication failed: missing, malformed, unknown, revoked or expired API key.",
    403: "The API key lacks the operation's scope.",
    404: "Not found (or owned by another organisation).",
    409: "Conflict with the current state.",
    413: "Request body too large.",
    422: "Validation failed; details name the fields.",
    429: "Rate limit exceeded.",
    501: "Not supported by this server (error type not_supported).",
    503: "A dependency (mail server, database) is unavailable; retry after Retry-After seconds.",
}

_RATE_HEADERS = {
    "X-RateLimit-Limit": {"schema": {"type": "integer"}, "description": "Requests allowed in the window."},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "Requests left in the window."},
    "X-RateLimit-Reset": {"schema": {"type": "integer"}, "description": "Unix time (s) when the window resets."},
}


def _components(operations: Sequence[Operation]) -> dict[str, Any]:
    models: list[type[pydantic.BaseModel]] = [Error]
    for op in operations:
        for model in (op.body, op.response):
            if model is not None and model not in models:
                models.append(model)
    keyed = [(m, "validation" if any(m is op.body for op in operations) else "serialization") for m in models]
    _, schema = models_json_schema(keyed, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    defs: dict[str, Any] = schema.get("$defs", {})
    return defs


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without pydantic's ``null`` branch (``X | None = None``).

    A query string has no null: an optional parameter is simply left out, so ``anyOf: [S, null]``
    with ``default: null`` becomes ``S``.
    """
    branches = prop.get("anyOf")
    if not isinstance(branches, list):
        return prop
    others = [b for b in branches if b != {"type": "null"}]
    if len(others) != 1 or len(others) == len(branches):
        return prop
    out = {k: v for k, v in prop.items() if k != "anyOf"}
    if out.get("default", 0) is None:
        del out["default"]
    return {**others[0], **out}


def _query_parameters(model: type[pydantic.BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _not_null(dict(prop))
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 256}}
        for n in names
    ]


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": list(op.tags)}
    if op.description:
        doc["description"] = op.description
    if op.scope is not None:
        doc["x-scope"] = op.scope.value
    elif op.authenticated:
        doc["x-scope"] = "authenticated"
    else:
        doc["security"] = []
        if op.tier is not None:  # a public operation limited per path (the reference's "public")
            doc["x-scope"] = "public"
    if op.tier is not None:
        doc["x-rate-limit-tier"] = op.tier.value
    params = _path_parameters(op.path) + (_query_parameters(op.query) if op.query else [])
    if op.idempotency is Idempotency.HONOURED:
        params.append(dict(idempotency.PARAMETER))
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}},
        }
    if op.raw_body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {op.raw_body: {"schema": {"type": "string", "format": "binary"}}},
        }
    responses: dict[str, Any] = {}
    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None and op.status_code != 204:
        success["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.response.__name__}"}}}
    if op.tier is not None and (op.scope is not None or op.authenticated):
        success["headers"] = dict(_RATE_HEADERS)
    responses[str(op.status_code)] = success
    for status in op.errors:
        if status == 503 and op.response is not None and op.scope is None:
            responses["503"] = {
                "description": _ERROR_DESCRIPTIONS[503],
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.response.__name__}"}}},
            }
            continue
        entry: dict[str, Any] = {
            "description": _ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if status == 429:
            entry["headers"] = {**_RATE_HEADERS, "Retry-After": {"schema": {"type": "integer"}}}
        responses[str(status)] = entry
    if op.idempotency is Idempotency.HONOURED:
        for status in (409, 422):
            responses.setdefault(
                str(status),
                {
                    "description": _ERROR_DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            )
    if op.body is not None:
        responses.setdefault(
            "413",
            {
                "description": _ERROR_DESCRIPTIONS[413],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        )
        responses.setdefault(
            "422",
            {
                "description": _ERROR_DESCRIPTIONS[422],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        )
    responses.update(op.extra_responses)
    doc["responses"] = dict(sorted(responses.items()))
    return doc


def build_document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``operations`` (paths relative to the ``/v1`` server)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "shipmail",
            "version": __version__,
            "description": "Self-hostable hosted-mailbox API: Shipmail's REST API over a JMAP mail server.",
            "license": {"name": "GPL-3.0-or-later", "identifier": "GPL-3.0-or-later"},
        },
        "servers": [{"url": "/v1"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "API key: sm_live_..."}
            },
            "schemas": _components(operations),
        },
    }


def dumps(document: dict[str, Any]) -> str:
    """The canonical text of a document (what ``openapi/openapi.json`` holds)."""
    return json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
