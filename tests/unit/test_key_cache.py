"""The key cache of Bearer authentication: reuse within the TTL, revocation bounds, no negatives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from authlib.oauth2.rfc6750 import InvalidTokenError
from starlette.requests import Request

from shipmail import utc
from shipmail.auth.bearer import BearerAuth, KeyCache, NotCached, Principal, ResourceRequest, forget_key
from shipmail.auth.scopes import Scope

KEY = "sm_live_" + "A" * 40
OTHER = "sm_live_" + "B" * 40


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rows:
    """What the database holds, as the lookup reads it; counts the lookups."""

    def __init__(self) -> None:
        self.rows: dict[str, Principal] = {
            KEY: Principal(key_id="key_a", organization_id="org_1", scopes=("*",), expires_at=None, revoked_at=None)
        }
        self.lookups: list[str] = []
        self.during_lookup: list[Callable[[], None]] = []

    def __call__(self, key: str) -> Principal | None:
        self.lookups.append(key)
        for action in self.during_lookup:
            action()
        return self.rows.get(key)

    def revoke(self, key: str) -> None:
        self.rows[key] = replace(self.rows[key], revoked_at=utc.now())


def starlette_request(key: str) -> Request:
    """A ``GET /v1/domains`` carrying ``Bearer <key>``."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/domains",
        "query_string": b"",
        "scheme": "http",
        "server": ("testserver", 80),
        "headers": [(b"authorization", f"Bearer {key}".encode())],
    }
    return Request(scope)


def request(key: str) -> ResourceRequest:
    return ResourceRequest(starlette_request(key))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rows() -> Rows:
    return Rows()


@pytest.fixture
def auth(rows: Rows, clock: Clock) -> BearerAuth:
    return BearerAuth(rows, KeyCache(ttl=5.0, clock=clock))


def test_a_looked_up_key_is_served_from_the_cache(auth: BearerAuth, rows: Rows) -> None:
    with pytest.raises(NotCached):
        auth.validate_cached(request(KEY), Scope.DOMAINS_READ)
    principal = auth.validate(request(KEY), Scope.DOMAINS_READ)
    assert auth.validate_cached(request(KEY), Scope.DOMAINS_WRITE) == principal
    assert rows.lookups == [KEY]


def test_a_key_revoked_elsewhere_stops_working_when_its_entry_expires(
    auth: BearerAuth, rows: Rows, clock: Clock
) -> None:
    auth.validate(request(KEY), None)
    rows.revoke(KEY)  # another process: no forget_key here
    clock.now += 4.9
    assert auth.validate_cached(request(KEY), None).revoked_at is None  # within the documented TTL
    clock.now += 0.1  # KEY_CACHE_SECONDS after the lookup began
    with pytest.raises(NotCached):
        auth.validate_cached(request(KEY), None)
    with pytest.raises(InvalidTokenError):
        auth.validate(request(KEY), None)
    with pytest.raises(InvalidTokenError):  # the revoked row is cached as revoked
        auth.validate_cached(request(KEY), None)
    assert rows.lookups == [KEY, KEY]


def test_the_ttl_counts_from_the_start_of_the_lookup(auth: BearerAuth, rows: Rows, clock: Clock) -> None:
    def slow() -> None:
        clock.now += 3.0

    rows.during_lookup.append(slow)
    auth.validate(request(KEY), None)
    clock.now += 1.9
    auth.validate_cached(request(KEY), None)
    clock.now += 0.1
    with pytest.raises(NotCached):
        auth.validate_cached(request(KEY), None)


def test_forget_key_drops_it_at_once(auth: BearerAuth, rows: Rows) -> None:
    auth.validate(request(KEY), None)
    rows.revoke(KEY)
    forget_key("key_a")
    with pytest.raises(NotCached):
        auth.validate_cached(request(KEY), None)
    with pytest.raises(InvalidTokenError):
        auth.validate(request(KEY), None)


def test_a_lookup_racing_a_revocation_is_not_cached(auth: BearerAuth, rows: Rows) -> None:
    """The row was read before the revocation committed; the entry must not outlive it."""
    rows.during_lookup.append(lambda: forget_key("key_a"))
    assert auth.validate(request(KEY), None).revoked_at is None
    with pytest.raises(NotCached):
        auth.validate_cached(request(KEY), None)


def test_unknown_keys_are_never_cached(auth: BearerAuth, rows: Rows) -> None:
    with pytest.raises(InvalidTokenError):
        auth.validate(request(OTHER), None)
    rows.rows[OTHER] = replace(rows.rows[KEY], key_id="key_b")  # created a moment later
    with pytest.raises(NotCached):
        auth.validate_cached(request(OTHER), None)
    assert auth.validate(request(OTHER), None).key_id == "key_b"


def test_ttl_zero_disables_the_cache(rows: Rows, clock: Clock) -> None:
    auth = BearerAuth(rows, KeyCache(ttl=0, clock=clock))
    auth.validate(request(KEY), None)
    with pytest.raises(NotCached):
        auth.validate_cached(request(KEY), None)


async def test_authenticate_looks_a_key_up_once(auth: BearerAuth, rows: Rows) -> None:
    first = await auth.authenticate(starlette_request(KEY), Scope.DOMAINS_READ)
    second = await auth.authenticate(starlette_request(KEY), Scope.DOMAINS_READ)
    assert first == second and rows.lookups == [KEY]
