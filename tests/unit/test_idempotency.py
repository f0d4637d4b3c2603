"""``Idempotency-Key`` (:mod:`shipmail.http.idempotency`): replay, reuse with another body, scope
per API key, expiry and purge, concurrency, opt-out, failures, on SQLite and PostgreSQL.

The app's own operations (``createDomain``) show the wire behaviour; a small app of synthetic
operations built with the same routing pipeline counts how often a handler really ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.testclient import TestClient

from shipmail.auth.bearer import BearerAuth
from shipmail.auth.scopes import Scope
from shipmail.config import Settings
from shipmail.db import idempotency as store
from shipmail.db.engine import Database, create_sync_engine
from shipmail.http import idempotency
from shipmail.http.errors import Conflict, ServiceUnavailable
from shipmail.http.idempotency import Idempotency
from shipmail.http.openapi import build_document
from shipmail.http.ratelimit import RateLimits, Tier
from shipmail.http.routing import Context, Operation, Pipeline, build_routes, operation
from shipmail.http.schemas import Request as RequestModel
from shipmail.http.schemas import Wire
from shipmail.keys import service as key_service
from shipmail.routes import OPERATIONS
from shipmail.utc import now as utcnow
from tests.unit.conftest import auth, make_key, run_db

IDEM = "Idempotency-Key"


def _domains(client: TestClient, key: str) -> list[str]:
    return [d["name"] for d in client.get("/v1/domains", headers=auth(key)).json()["data"]]


def test_retry_answers_the_first_response_and_does_the_work_once(
    client: TestClient, settings: Settings, db_backend: str
) -> None:
    key = make_key(settings)
    headers = {**auth(key), IDEM: "create-example-1"}
    first = client.post("/v1/domains", json={"name": "once.example"}, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    # Same body with other key order and whitespace: the same request.
    again = client.post(
        "/v1/domains", content=b'{ "name" :  "once.example" }', headers={**headers, "Content-Type": "application/json"}
    )
    assert again.status_code == 201, again.text  # not 409: the domain was not created twice
    assert again.json() == first.json()
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert int(again.headers["x-ratelimit-remaining"]) < int(first.headers["x-ratelimit-remaining"])
    assert _domains(client, key) == ["once.example"]
    # Without the key the same request is new work (and conflicts).
    assert client.post("/v1/domains", json={"name": "once.example"}, headers=auth(key)).status_code == 409


def test_same_key_with_another_body_is_422(client: TestClient, settings: Settings, db_backend: str) -> None:
    key = make_key(settings)
    headers = {**auth(key), IDEM: "k-reuse"}
    assert client.post("/v1/domains", json={"name": "a.example"}, headers=headers).status_code == 201
    r = client.post("/v1/domains", json={"name": "b.example"}, headers=headers)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["type"] == "validation_error"
    assert err["details"] == [
        {"field": IDEM, "code": "idempotency_key_reused", "message": "already used with a different request"}
    ]
    # Another operation (other path, method) with the same key is another request too.
    dom = client.get("/v1/domains", headers=auth(key)).json()["data"][0]
    r = client.delete(f"/v1/domains/{dom['id']}", headers=headers)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "idempotency_key_reused"
    assert _domains(client, key) == ["a.example"]


def test_keys_are_scoped_to_the_api_key(client: TestClient, settings: Settings, db_backend: str) -> None:
    one, other = make_key(settings, org="acme"), make_key(settings, org="globex")
    same_org = make_key(settings, org="acme")
    a = client.post("/v1/domains", json={"name": "a.example"}, headers={**auth(one), IDEM: "shared"})
    b = client.post("/v1/domains", json={"name": "b.example"}, headers={**auth(other), IDEM: "shared"})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]
    # Another key of the same organisation: not a replay of the first key's request (409: the
    # organisation has the domain already).
    c = client.post("/v1/domains", json={"name": "a.example"}, headers={**auth(same_org), IDEM: "shared"})
    assert c.status_code == 409 and "idempotent-replayed" not in c.headers


def test_error_responses_are_replayed(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    headers = {**auth(key), IDEM: "del-missing"}
    first = client.delete("/v1/domains/dom_missing", headers=headers)
    again = client.delete("/v1/domains/dom_missing", headers=headers)
    assert first.status_code == again.status_code == 404
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_malformed_key_is_422(client: TestClient, settings: Settings, value: str) -> None:
    key = make_key(settings)
    r = client.post(
        "/v1/domains",
        content=b'{"name": "m.example"}',
        headers=[
            (b"Authorization", f"Bearer {key}".encode()),
            (b"Content-Type", b"application/json"),
            (IDEM.encode(), value.encode("utf-8")),
        ],
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["code"] == "invalid_idempotency_key"
    assert _domains(client, key) == []


def test_invalid_body_is_not_remembered(client: TestClient, settings: Settings) -> None:
    """A request refused before it ran (422 body) keeps no key: the corrected retry runs."""
    key = make_key(settings)
    headers = {**auth(key), IDEM: "fix-me"}
    assert client.post("/v1/domains", json={"name": 5}, headers=headers).status_code == 422
    assert client.post("/v1/domains", json={"name": "fixed.example"}, headers=headers).status_code == 201


def test_expired_key_runs_again_and_purge_deletes_it(client: TestClient, settings: Settings, db_backend: str) -> None:
    key = make_key(settings)
    headers = {**auth(key), IDEM: "old"}
    assert client.post("/v1/domains", json={"name": "old.example"}, headers=headers).status_code == 201

    async def age(session: Any) -> None:
        past = utcnow() - idempotency.TTL - timedelta(seconds=1)
        await session.exec(sa.update(store.IdempotencyKey).values(expires_at=past))
        await session.commit()

    run_db(settings, age)
    # Expired: the request runs again (and conflicts: the domain exists).
    r = client.post("/v1/domains", json={"name": "old.example"}, headers=headers)
    assert r.status_code == 409 and "idempotent-replayed" not in r.headers
    run_db(settings, age)
    assert run_db(settings, lambda s: store.purge_expired(s, utcnow())) == 1
    assert run_db(settings, lambda s: store.read(s, "any", "any")) is None

    async def count(session: Any) -> int:
        return len((await session.exec(sa.select(store.IdempotencyKey))).all())

    assert run_db(settings, count) == 0


def test_openapi_declares_the_header_on_mutating_operations() -> None:
    doc = build_document(OPERATIONS)
    for op in OPERATIONS:
        params = doc["paths"][op.path][op.method.lower()].get("parameters", [])
        names = [p["name"] for p in params if p["in"] == "header"]
        mutating = op.method in {"POST", "PUT", "PATCH", "DELETE"}
        # The two that answer a one-time secret refuse the header (their reference declarations).
        refusing = {"createMailboxAppPassword", "prepareStagedAttachmentUpload"}
        if mutating and (op.scope is not None or op.authenticated) and op.operation_id not in refusing:
            assert op.idempotency is Idempotency.HONOURED, op.operation_id  # every authenticated write
        if op.idempotency is Idempotency.HONOURED:
            assert op.method in {"POST", "PUT", "PATCH", "DELETE"}, op.operation_id
            assert names == [IDEM], op.operation_id
            responses = doc["paths"][op.path][op.method.lower()]["responses"]
            assert {"409", "422"} <= set(responses), op.operation_id
        else:
            assert names == [], op.operation_id


# ---- synthetic operations on the same pipeline -------------------------------------------------


class Body(RequestModel):
    value: str


class Out(Wire):
    value: str
    runs: int


class Harness:
    def __init__(self) -> None:
        self.runs = 0
        self.gate: asyncio.Event | None = None
        self.fail_next = False

    def operations(self) -> list[Operation]:
        ops: list[Operation] = []

        @operation(ops, "POST", "/work", operation_id="work", summary="w", scope=Scope.DOMAINS_WRITE,
                   tier=Tier.WRITE, body=Body, response=Out, status_code=201)  # fmt: skip
        async def work(ctx: Context[Body, None]) -> Out:
            self.runs += 1
            if self.gate is not None:
                await self.gate.wait()
            if self.fail_next:
                self.fail_next = False
                raise ServiceUnavailable("mail server down")
            return Out(value=ctx.body.value, runs=self.runs)

        @operation(ops, "POST", "/secret", operation_id="secret", summary="s", scope=Scope.DOMAINS_WRITE,
                   tier=Tier.WRITE, body=Body, response=Out, status_code=201,
                   idempotency=Idempotency.REFUSED)  # fmt: skip
        async def secret(ctx: Context[Body, None]) -> Out:
            self.runs += 1
            return Out(value="shown once", runs=self.runs)

        @operation(ops, "POST", "/stream", operation_id="stream", summary="s", scope=Scope.DOMAINS_WRITE,
                   tier=Tier.WRITE)  # fmt: skip
        async def stream(ctx: Context[None, None]) -> Response:
            self.runs += 1

            async def chunks() -> AsyncIterator[bytes]:
                yield b"streamed"

            return StreamingResponse(chunks(), media_type="text/plain")

        @operation(ops, "POST", "/boom", operation_id="boom", summary="b", scope=Scope.DOMAINS_WRITE,
                   tier=Tier.WRITE)  # fmt: skip
        async def boom(ctx: Context[None, None]) -> None:
            self.runs += 1
            raise RuntimeError("bug")

        @operation(ops, "POST", "/conflict", operation_id="conflict", summary="c", scope=Scope.DOMAINS_WRITE,
                   tier=Tier.WRITE)  # fmt: skip
        async def conflict(ctx: Context[None, None]) -> None:
            self.runs += 1
            raise Conflict("already there")

        return ops


@asynccontextmanager
async def harness_client(settings: Settings, harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_sync_engine(settings.database_url)

    def lookup(key: str) -> Any:
        with engine.connect() as conn:
            return key_service.principal_for(conn, settings.secret_key, key)

    limits = RateLimits("memory://", {Tier.READ: "1000/minute", Tier.WRITE: "1000/minute"})
    routes = build_routes(harness.operations(), Pipeline(BearerAuth(lookup), limits, 65536), prefix="/v1")
    app = Starlette(routes=routes)
    db = Database(settings.database_url)
    app.state.services = SimpleNamespace(db=db, settings=settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            yield c
    finally:
        await db.dispose()
        engine.dispose()


def test_concurrent_duplicates_run_once(settings: Settings, db_backend: str) -> None:
    key = make_key(settings)
    harness = Harness()

    async def go() -> list[httpx.Response]:
        harness.gate = asyncio.Event()
        async with harness_client(settings, harness) as c:
            headers = {**auth(key), IDEM: "race"}
            tasks = [asyncio.create_task(c.post("/v1/work", json={"value": "v"}, headers=headers)) for _ in range(3)]
            await asyncio.sleep(0.5)  # all three are in: one runs, two wait for it
            assert harness.runs == 1
            harness.gate.set()
            return list(await asyncio.gather(*tasks))

    responses = asyncio.run(go())
    assert harness.runs == 1
    assert [r.status_code for r in responses] == [201, 201, 201]
    assert len({r.text for r in responses}) == 1
    assert sorted(r.headers.get("idempotent-replayed", "") for r in responses) == ["", "true", "true"]


def test_a_request_still_running_after_the_wait_is_409(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, db_backend: str
) -> None:
    monkeypatch.setattr(idempotency, "WAIT_SECONDS", 0.3)
    key = make_key(settings)
    harness = Harness()

    async def go() -> tuple[httpx.Response, httpx.Response]:
        harness.gate = asyncio.Event()
        async with harness_client(settings, harness) as c:
            headers = {**auth(key), IDEM: "slow"}
            first = asyncio.create_task(c.post("/v1/work", json={"value": "v"}, headers=headers))
            await asyncio.sleep(0.2)
            second = await c.post("/v1/work", json={"value": "v"}, headers=headers)
            harness.gate.set()
            return await first, second

    first, second = asyncio.run(go())
    assert first.status_code == 201
    assert second.status_code == 409 and second.json()["error"]["type"] == "conflict"
    assert second.headers["retry-after"] == "1"
    assert harness.runs == 1


def test_5xx_and_exceptions_release_the_key(settings: Settings) -> None:
    key = make_key(settings)
    harness = Harness()

    async def go() -> list[httpx.Response]:
        async with harness_client(settings, harness) as c:
            headers = {**auth(key), IDEM: "flaky"}
            harness.fail_next = True
            out = [await c.post("/v1/work", json={"value": "v"}, headers=headers)]
            out.append(await c.post("/v1/work", json={"value": "v"}, headers=headers))
            out.append(await c.post("/v1/work", json={"value": "v"}, headers=headers))
            boom = {**auth(key), IDEM: "boom"}
            out.append(await c.post("/v1/boom", headers=boom))
            out.append(await c.post("/v1/boom", headers=boom))
            return out

    r = asyncio.run(go())
    assert [x.status_code for x in r] == [503, 201, 201, 500, 500]
    assert r[1].json() == r[2].json() == {"value": "v", "runs": 2}  # the 503 was not kept
    assert r[2].headers["idempotent-replayed"] == "true"
    assert harness.runs == 4  # 503, 201, boom, boom: nothing ran for the replay


def test_4xx_from_the_handler_is_kept(settings: Settings) -> None:
    key = make_key(settings)
    harness = Harness()

    async def go() -> list[httpx.Response]:
        async with harness_client(settings, harness) as c:
            headers = {**auth(key), IDEM: "conflict"}
            return [await c.post("/v1/conflict", headers=headers) for _ in range(2)]

    r = asyncio.run(go())
    assert [x.status_code for x in r] == [409, 409] and harness.runs == 1


def test_operation_can_refuse_the_header(settings: Settings) -> None:
    key = make_key(settings)
    harness = Harness()

    async def go() -> list[httpx.Response]:
        async with harness_client(settings, harness) as c:
            refused = await c.post("/v1/secret", json={"value": "v"}, headers={**auth(key), IDEM: "k"})
            plain = await c.post("/v1/secret", json={"value": "v"}, headers=auth(key))
            return [refused, plain]

    refused, plain = asyncio.run(go())
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["code"] == "idempotency_key_not_allowed"
    assert plain.status_code == 201 and harness.runs == 1
    ops = {op.operation_id: op for op in harness.operations()}
    doc = build_document(list(ops.values()))
    assert "parameters" not in doc["paths"]["/secret"]["post"]
    assert doc["paths"]["/work"]["post"]["parameters"][0]["name"] == IDEM


def test_streamed_response_is_not_replayed_nor_run_twice(settings: Settings) -> None:
    key = make_key(settings)
    harness = Harness()

    async def go() -> list[httpx.Response]:
        async with harness_client(settings, harness) as c:
            headers = {**auth(key), IDEM: "stream"}
            return [await c.post("/v1/stream", headers=headers) for _ in range(2)]

    first, again = asyncio.run(go())
    assert first.status_code == 200 and first.text == "streamed"
    assert again.status_code == 409 and "cannot be replayed" in again.json()["error"]["message"]
    assert harness.runs == 1


def test_first_claim_queues_the_periodic_purge(client: TestClient, settings: Settings, db_backend: str) -> None:
    from shipmail import jobs
    from shipmail.tasks import HANDLERS

    assert HANDLERS[idempotency.PURGE_JOB] is idempotency.purge_job
    key = make_key(settings)
    assert client.post("/v1/domains", json={"name": "p.example"}, headers={**auth(key), IDEM: "p"}).status_code == 201
    job = run_db(settings, lambda s: jobs.find(s, idempotency.PURGE_JOB))
    assert job is not None and job.kind == idempotency.PURGE_JOB
    assert job.run_at > utcnow() + timedelta(seconds=idempotency.PURGE_EVERY - 60)

    async def expire_and_purge(session: Any) -> tuple[int, float]:
        past = utcnow() - timedelta(seconds=1)
        await session.exec(sa.update(store.IdempotencyKey).values(expires_at=past))
        await session.commit()
        db = Database(settings.database_url)
        try:
            with pytest.raises(jobs.Retry) as retry:
                await idempotency.purge_job(job, SimpleNamespace(db=db))  # type: ignore[arg-type]
        finally:
            await db.dispose()
        left = len((await session.exec(sa.select(store.IdempotencyKey))).all())
        return left, retry.value.after

    assert run_db(settings, expire_and_purge) == (0, idempotency.PURGE_EVERY)
