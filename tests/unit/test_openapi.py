"""The OpenAPI document: valid 3.1, committed copy in step, served by the app, in step with the
routes, and scopes/tiers as in Shipmail's reference document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from starlette.routing import Route
from starlette.testclient import TestClient

from shipmail.app import API_PREFIX
from shipmail.http.openapi import REPO_SPEC, build_document, dumps
from shipmail.mailgun.routes import build_document as mailgun_document
from shipmail.routes import OPERATIONS

REFERENCE = Path("/work/shared/reference/shipmail-openapi.json")
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
DOCUMENT_ROUTE = f"GET {API_PREFIX}/openapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(OPERATIONS)


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"GET /domains": operation}`` for every operation of ``doc``."""
    return {
        f"{method.upper()} {path}": op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def test_document_is_valid_openapi_31(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    try:
        validate(document)
    except OpenAPIValidationError as exc:  # pragma: no cover - the message is the point
        pytest.fail(f"invalid OpenAPI document: {exc}")


def test_document_has_every_operation_once(document: dict[str, Any]) -> None:
    ops = _operations(document)
    assert len(ops) == len(OPERATIONS)
    ids = [op["operationId"] for op in ops.values()]
    assert len(set(ids)) == len(ids)
    # Every $ref resolves to a component.
    text = json.dumps(document)
    for name in {part.split('"')[0] for part in text.split('"#/components/schemas/')[1:]}:
        assert name in document["components"]["schemas"], name


def test_committed_document_is_current(document: dict[str, Any]) -> None:
    hint = "openapi/openapi.json is out of date: run `shipmail openapi --write` and commit the result"
    assert REPO_SPEC.exists(), hint
    committed = REPO_SPEC.read_text(encoding="utf-8")
    assert json.loads(committed) == document, hint
    assert committed == dumps(document), hint + " (formatting differs)"


def test_app_serves_the_document(client: TestClient, document: dict[str, Any]) -> None:
    response = client.get(f"{API_PREFIX}/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == document
    assert response.json() == client.app.state.openapi  # type: ignore[attr-defined]


def _app_routes(client: TestClient) -> set[str]:
    routes = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        assert isinstance(route, Route), f"unexpected route type {type(route).__name__}"
        for method in route.methods or ():
            if method != "HEAD":
                routes.add(f"{method} {route.path}")
    routes.discard(DOCUMENT_ROUTE)
    return routes


def test_routes_and_document_agree(client: TestClient, document: dict[str, Any]) -> None:
    assert document["servers"] == [{"url": API_PREFIX}]
    routes = _app_routes(client)
    documented = {f"{label.split(' ', 1)[0]} {API_PREFIX}{label.split(' ', 1)[1]}" for label in _operations(document)}
    # The Mailgun-compatible routes are in their own document, served at /v3/openapi.json.
    documented |= set(_operations(mailgun_document())) | {"GET /v3/openapi.json"}
    undocumented = sorted(routes - documented)
    unrouted = sorted(documented - routes)
    assert not undocumented, f"routes missing from the OpenAPI document: {undocumented}"
    assert not unrouted, f"documented operations the app does not route: {unrouted}"


def test_scopes_and_tiers_match_the_reference(document: dict[str, Any]) -> None:
    reference = _operations(json.loads(REFERENCE.read_text(encoding="utf-8")))
    compared = 0
    for label, op in _operations(document).items():
        if "x-scope" not in op:
            assert op.get("security") == [], f"{label}: no x-scope, so it must be public (security: [])"
            continue
        assert op.get("x-rate-limit-tier"), f"{label}: x-scope without x-rate-limit-tier"
        ref = reference.get(label)
        if ref is None:
            continue
        compared += 1
        assert op["x-scope"] == ref.get("x-scope"), f"{label}: x-scope {op['x-scope']} != {ref.get('x-scope')}"
        assert op["x-rate-limit-tier"] == ref.get("x-rate-limit-tier"), (
            f"{label}: x-rate-limit-tier {op['x-rate-limit-tier']} != {ref.get('x-rate-limit-tier')}"
        )
    assert compared, "no operation was compared with the reference document"


def test_public_operations_are_public_in_the_reference(document: dict[str, Any]) -> None:
    reference = _operations(json.loads(REFERENCE.read_text(encoding="utf-8")))
    for label, op in _operations(document).items():
        if "x-scope" in op or label not in reference:
            continue
        assert "x-scope" not in reference[label], f"{label} is public here but scoped in the reference"
