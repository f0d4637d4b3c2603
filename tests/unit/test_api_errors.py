"""The error envelope on every failure, X-Request-Id on every response."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipmail.config import Settings
from shipmail.mailserver.base import MailHealth
from shipmail.status.routes import CACHE_SECONDS
from tests.fakes import FakeMailServer
from tests.unit.conftest import auth, make_key


def _envelope(r: object, status: int, type_: str) -> dict[str, object]:
    resp = r
    assert resp.status_code == status, resp.text  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    err = body["error"]
    assert err["type"] == type_
    assert isinstance(err["message"], str) and err["message"]
    assert err["request_id"] == resp.headers["x-request-id"]  # type: ignore[attr-defined]
    assert isinstance(err["details"], list)
    return err  # type: ignore[no-any-return]


def test_unknown_route_is_404_envelope(client: TestClient) -> None:
    _envelope(client.get("/v1/nope"), 404, "not_found")
    _envelope(client.get("/"), 404, "not_found")


def test_wrong_method_is_405_with_allow(client: TestClient, settings: Settings) -> None:
    r = client.put("/v1/domains", headers=auth(make_key(settings)))
    _envelope(r, 405, "method_not_allowed")
    assert set(m.strip() for m in r.headers["allow"].split(",")) >= {"GET", "POST"}


def test_oversized_body_is_413(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    big = b'{"name": "' + b"a" * (settings.max_body_bytes + 10) + b'"}'
    r = client.post("/v1/domains", content=big, headers={**auth(key), "Content-Type": "application/json"})
    _envelope(r, 413, "validation_error")


def test_invalid_json_and_fields_are_422_with_details(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    err = _envelope(client.post("/v1/domains", content=b"{nope", headers=auth(key)), 422, "validation_error")
    assert err["details"][0]["field"] == "body"  # type: ignore[index]
    err = _envelope(client.post("/v1/domains", json={"nme": "x"}, headers=auth(key)), 422, "validation_error")
    fields = {d["field"] for d in err["details"]}  # type: ignore[attr-defined]
    assert fields == {"name", "nme"}
    err = _envelope(client.get("/v1/domains?limit=0", headers=auth(key)), 422, "validation_error")
    assert err["details"][0]["field"] == "limit"  # type: ignore[index]
    _envelope(client.post("/v1/domains", content=b"", headers=auth(key)), 422, "validation_error")
    _envelope(client.post("/v1/domains", content=b"\xff\xfe", headers=auth(key)), 422, "validation_error")


def test_validation_details_never_echo_passwords(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    secret = "Sh0rt"
    r = client.patch("/v1/mailboxes/mbx_x/password", json={"password": secret}, headers=auth(key))
    assert r.status_code == 422
    assert secret not in r.text


def test_unexpected_error_is_500_envelope_and_logged(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from shipmail.domains import service as domains

    async def boom(*a: object, **k: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(domains, "list_page", boom)
    with caplog.at_level(logging.ERROR):
        r = client.get("/v1/domains", headers=auth(make_key(settings)))
    err = _envelope(r, 500, "internal_error")
    assert "kaboom" not in r.text
    assert any(str(err["request_id"]) in rec.getMessage() for rec in caplog.records)


def test_every_response_has_a_request_id(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    seen = set()
    for r in [
        client.get("/v1/status"),
        client.get("/v1/domains", headers=auth(key)),
        client.get("/v1/domains"),
        client.get("/v1/openapi.json"),
        client.get("/v1/missing"),
        client.delete("/v1/status"),
    ]:
        rid = r.headers["x-request-id"]
        assert rid.startswith("req_") and rid not in seen
        seen.add(rid)


ALL_UP = {name: {"status": "up"} for name in ("database", "jmap", "imap", "lmtp", "login_checker")}


def status_until(client: TestClient, code: int) -> Any:
    """``GET /v1/status`` until it answers ``code`` (results are reused for up to half a second)."""
    deadline = time.monotonic() + 5
    while True:
        r = client.get("/v1/status")
        if r.status_code == code or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_status_reports_components(client: TestClient, mail: FakeMailServer) -> None:
    r = client.get("/v1/status")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "operational"
    assert body["components"] == ALL_UP
    assert r.headers["cache-control"] == "no-store"
    assert "retry-after" not in r.headers
    for part in ("jmap", "imap", "lmtp", "login_checker"):
        mail.down = {part}
        r = status_until(client, 503)
        assert r.status_code == 503, part
        assert r.json()["status"] == "degraded"
        assert r.json()["components"] == {**ALL_UP, part: {"status": "down"}}
        assert int(r.headers["retry-after"]) > 0
        mail.down = set()
        assert status_until(client, 200).json()["components"] == ALL_UP


def test_status_probes_at_most_once_per_cache_period(client: TestClient, mail: FakeMailServer) -> None:
    probes = 0
    real = mail.health

    async def counting() -> MailHealth:
        nonlocal probes
        probes += 1
        return await real()

    mail.health = counting  # type: ignore[method-assign]
    began = time.monotonic()
    for _ in range(40):
        assert client.get("/v1/status").status_code == 200
    rounds_allowed = 1 + int((time.monotonic() - began) / CACHE_SECONDS)
    assert 1 <= probes <= rounds_allowed, (probes, rounds_allowed)


def test_status_503_when_database_is_down(tmp_path: object, mail: object) -> None:
    from shipmail.app import create_app

    settings = Settings.from_env(
        data_dir=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none", secret_key=b"x"
    )
    with TestClient(create_app(settings, mail_server=mail)) as c:  # type: ignore[arg-type]
        r = c.get("/v1/status")
    assert r.status_code == 503
    assert r.json()["components"]["database"] == {"status": "down"}
