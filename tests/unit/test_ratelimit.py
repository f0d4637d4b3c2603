"""Per-key rate-limit tiers (slowapi): headers, 429 envelope, tier and key separation, Redis."""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipmail.app import create_app
from shipmail.config import Settings
from shipmail.http.ratelimit import RateLimits, Tier, Window
from tests.fakes import FakeMailServer
from tests.unit.conftest import auth, make_key


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"ratelimit_read": "3/minute", "ratelimit_write": "2/minute"}


def test_headers_on_every_limited_response(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    r = client.get("/v1/domains", headers=auth(key))
    assert r.headers["x-ratelimit-limit"] == "3"
    assert r.headers["x-ratelimit-remaining"] == "2"
    reset = int(r.headers["x-ratelimit-reset"])  # an integer, unix seconds
    assert time.time() - 1 <= reset <= time.time() + 61


def test_reset_is_the_end_of_the_window_on_every_hit(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    responses = [client.get("/v1/domains", headers=auth(key)) for _ in range(4)]
    assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert responses[-1].status_code == 429
    assert len({r.headers["x-ratelimit-reset"] for r in responses}) == 1


def test_429_envelope_and_retry_after(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    for _ in range(3):
        assert client.get("/v1/domains", headers=auth(key)).status_code == 200
    r = client.get("/v1/mailboxes", headers=auth(key))  # same tier, other route: shared bucket
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["type"] == "rate_limit_error"
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= 60 and err["retry_after"] == retry_after
    assert r.headers["x-ratelimit-remaining"] == "0" and r.headers["x-ratelimit-limit"] == "3"
    # The write tier has its own bucket.
    assert client.post("/v1/domains", json={"name": "w.example"}, headers=auth(key)).status_code == 201
    # Another key of the same organisation has its own buckets.
    assert client.get("/v1/domains", headers=auth(make_key(settings))).status_code == 200


def test_unauthenticated_requests_are_not_counted(client: TestClient, settings: Settings) -> None:
    for _ in range(5):
        assert client.get("/v1/domains").status_code == 401
        assert client.get("/v1/status").status_code == 200
    assert client.get("/v1/domains", headers=auth(make_key(settings))).headers["x-ratelimit-remaining"] == "2"


@pytest.mark.skipif(not os.environ.get("SHIPMAIL_TEST_REDIS_URL"), reason="SHIPMAIL_TEST_REDIS_URL not set")
def test_redis_storage_is_shared_between_apps(settings: Settings) -> None:
    shared = settings.model_copy(update={"ratelimit_storage": os.environ["SHIPMAIL_TEST_REDIS_URL"]})
    key = make_key(settings)
    app1 = create_app(shared, mail_server=FakeMailServer())
    app2 = create_app(shared, mail_server=FakeMailServer())
    with TestClient(app1) as c1, TestClient(app2) as c2:
        assert c1.get("/v1/domains", headers=auth(key)).status_code == 200
        assert c2.get("/v1/domains", headers=auth(key)).status_code == 200
        assert c1.get("/v1/domains", headers=auth(key)).status_code == 200
        r = c2.get("/v1/domains", headers=auth(key))
        assert r.status_code == 429, "the two apps must share the Redis counters"
        assert r.headers["x-ratelimit-remaining"] == "0"
        # app1 opened the window, app2 read its end from Redis (whole seconds).
        first = c1.get("/v1/mailboxes", headers=auth(key))
        assert first.status_code == 429
        assert abs(int(first.headers["x-ratelimit-reset"]) - int(r.headers["x-ratelimit-reset"])) <= 1


@pytest.mark.skipif(not os.environ.get("SHIPMAIL_TEST_REDIS_URL"), reason="SHIPMAIL_TEST_REDIS_URL not set")
def test_redis_is_counted_through_limits_aio_on_each_event_loop() -> None:
    limits = RateLimits(os.environ["SHIPMAIL_TEST_REDIS_URL"], {Tier.READ: "3/minute", Tier.WRITE: "2/minute"})
    key_id = "key_" + secrets.token_hex(12)

    async def hits(n: int) -> list[Window]:
        try:
            return [await limits.hit(Tier.READ, key_id) for _ in range(n)]
        finally:
            await limits.aclose()

    first = asyncio.run(hits(2))  # one event loop (one app lifespan) ...
    second = asyncio.run(hits(2))  # ... then another: a new connection pool, the same counters
    assert [w.remaining for w in first + second] == [2, 1, 0, 0]
    assert [w.allowed for w in first + second] == [True, True, True, False]
    assert len({math.ceil(w.reset) for w in first + second}) <= 2  # the same window (whole seconds)


def test_every_4xx_of_a_limited_operation_is_counted_with_headers(client: TestClient, settings: Settings) -> None:
    """403 (scope), 404, 409 and 422 (query): each is counted and carries the headers."""
    key = make_key(settings)
    read_only = make_key(settings, scopes=["domains:read"])
    write = [
        client.post("/v1/domains", json={"name": "dup.example"}, headers=auth(key)),  # 201
        client.post("/v1/domains", json={"name": "dup.example"}, headers=auth(key)),  # 409
    ]
    assert [r.status_code for r in write] == [201, 409]
    assert [r.headers["x-ratelimit-remaining"] for r in write] == ["1", "0"]
    reads = [
        client.get("/v1/domains/dom_nothere", headers=auth(key)),  # 404
        client.get("/v1/domains?limit=0", headers=auth(key)),  # 422 (query)
        client.get("/v1/mailboxes", headers=auth(read_only)),  # 403: counted on the read_only key
    ]
    assert [r.status_code for r in reads] == [404, 422, 403]
    assert [r.headers["x-ratelimit-remaining"] for r in reads] == ["2", "1", "2"]
    assert all(r.headers["x-ratelimit-limit"] == "3" and int(r.headers["x-ratelimit-reset"]) for r in reads)


def test_422_and_413_bodies_are_counted_with_headers(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    bad = client.post("/v1/domains", json={"name": 5}, headers=auth(key))
    big = b'{"name": "' + b"a" * (settings.max_body_bytes + 10) + b'"}'
    huge = client.post("/v1/domains", content=big, headers={**auth(key), "Content-Type": "application/json"})
    assert (bad.status_code, huge.status_code) == (422, 413)
    assert [bad.headers["x-ratelimit-remaining"], huge.headers["x-ratelimit-remaining"]] == ["1", "0"]


def test_401_has_no_rate_limit_headers(client: TestClient) -> None:
    """Without a valid key there is no bucket to count in (documented in the README)."""
    r = client.get("/v1/domains", headers=auth("sm_live_" + "x" * 40))
    assert r.status_code == 401 and "x-ratelimit-limit" not in r.headers
