"""The Mailgun-compatible Mailboxes API with the fake mail server: its OpenAPI document
(``/v3/openapi.json``) is valid and every operation conforms to it under schemathesis (no 5xx,
documented statuses and shapes), and the wire details (Basic auth, form/multipart/JSON bodies,
``/v2`` = ``/v3``) hold. Against Cyrus: tests/integration/test_lifecycle.py."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from starlette.testclient import TestClient

from shipmail.app import create_app
from shipmail.config import Settings
from shipmail.mailgun.routes import build_document
from tests.dbfixtures import migrated_database
from tests.fakes import FakeJmap, FakeMailServer
from tests.unit.conftest import auth, make_key, verify_domain

DOMAIN = "mg.example"
STRONG = "Vq7-Lantern-Meadow-42"


def basic(key: str, user: str = "api") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


@pytest.fixture(scope="module")
def mg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Starlette, str]]:
    tmp_path: Path = tmp_path_factory.mktemp("mailgun")
    with migrated_database("sqlite", tmp_path) as url:
        settings = Settings.from_env(
            data_dir=tmp_path,
            database_url=url,
            secret_key=b"test-secret",
            ratelimit_read="100000/minute",
            ratelimit_write="100000/minute",
            jobs_worker=False,
        )
        key = make_key(settings)
        app = create_app(settings, mail_server=FakeMailServer(), jmap_transport=httpx.MockTransport(FakeJmap()))
        with TestClient(app) as client:
            assert client.post("/v1/domains", json={"name": DOMAIN}, headers=auth(key)).status_code == 201
            verify_domain(settings, DOMAIN)
            r = client.post(f"/v3/{DOMAIN}/mailboxes", data={"mailbox": "seed", "password": STRONG}, headers=basic(key))
            assert r.status_code == 200, r.text
        try:
            yield app, key
        finally:
            schemathesis_asgi.shutdown_lifespans()


def test_document_is_valid_openapi() -> None:
    document = build_document()
    validate(document)
    assert {"/v3/{domain}/mailboxes", "/v2/{domain}/mailboxes/{mailbox}"} <= set(document["paths"])
    ops = [op for path in document["paths"].values() for op in path.values()]
    assert all(op["tags"] == ["Mailgun compatibility"] and "x-scope" in op for op in ops)


def test_wire_shapes(mg: tuple[Starlette, str]) -> None:
    app, key = mg
    with TestClient(app) as client:
        r = client.post(
            f"/v2/{DOMAIN}/mailboxes",
            files={"mailbox": (None, "multi"), "password": (None, STRONG)},
            headers=basic(key),
        )
        assert r.json() == {"message": "Created 1 mailboxes"}, r.text
        r = client.post(
            f"/v3/{DOMAIN}/mailboxes", json={"mailbox": f"json@{DOMAIN}", "password": STRONG}, headers=basic(key)
        )
        assert r.json() == {"message": "Created 1 mailboxes"}, r.text
        r = client.post(
            f"/v3/{DOMAIN}/mailboxes", data={"mailbox": "x@other.example", "password": STRONG}, headers=basic(key)
        )
        assert r.status_code == 400 and set(r.json()) == {"message"}
        listed = client.get(f"/v2/{DOMAIN}/mailboxes", headers=basic(key)).json()
        assert listed["total_count"] == 3 and [i["mailbox"].split("@")[0] for i in listed["items"]] == [
            "seed",
            "multi",
            "json",
        ]
        r = client.get(f"/v3/{DOMAIN}/mailboxes", headers=basic(key, user="bob"))
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert client.get(f"/v3/{DOMAIN}/mailboxes", headers=auth(key)).status_code == 401
        assert client.get(f"/v3/{DOMAIN}/mailboxes?limit=0", headers=basic(key)).status_code == 400
        r = client.delete(f"/v3/{DOMAIN}/mailboxes/json", headers=basic(key))
        assert r.json() == {"message": "Mailbox has been deleted", "spec": f"json@{DOMAIN}"}


schema = schemathesis.openapi.from_dict(build_document())


@schema.hook
def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
    @st.composite
    def params(draw: st.DrawFn) -> Any:
        drawn = dict(getattr(value := draw(strategy), "value", value))
        if draw(st.booleans()):
            drawn["domain"] = DOMAIN
            if "mailbox" in drawn and draw(st.booleans()):
                drawn["mailbox"] = "seed"
        return drawn

    return params()


@schema.parametrize()
@hypothesis.settings(
    max_examples=10, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
def test_every_mailgun_operation_conforms(case: schemathesis.Case[Any], mg: tuple[Starlette, str]) -> None:
    app, key = mg
    headers = basic(key)
    response = case.call(app=app, headers=headers)
    case.validate_response(
        response,
        checks=[
            schemathesis.checks.not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        headers=headers,
        transport_kwargs={"app": app},
    )
