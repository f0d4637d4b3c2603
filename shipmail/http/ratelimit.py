"""Per-key rate-limit tiers over slowapi's limiter and ``limits``: one storage round trip per request.

Each operation has the tier its ``x-rate-limit-tier`` gives in Shipmail's reference spec (``read``,
``write`` or ``verification``); all operations of the ``read`` and ``write`` tiers share one
fixed-window bucket per API key and tier; the ``verification`` tier counts per organisation,
domain and operation (:func:`bucket_key`: 1 DNS check per minute per domain by default). Every limited
response carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
(integer unix seconds). Over the limit: :class:`~shipmail.http.errors.RateLimited` (429, with
``Retry-After`` and ``retry_after``).

What does the work: a slowapi :class:`~slowapi.Limiter` takes the storage URI (``memory://``,
``redis://...``), builds its storage and the ``fixed-window`` strategy of ``limits``
(``Limiter.limiter``) and fixes the key prefix; each tier's limit is a ``limits`` item parsed from
the setting and counted under the key slowapi's ``shared_limit(limit, scope=<tier>)`` uses
(``item.key_for("shipmail", <key id>, <tier>)``), so the buckets are slowapi's and stay exact
across workers sharing Redis.

Why not slowapi's decorators: ``shared_limit``'s wrapper counts synchronously on the event loop
(a blocking Redis call per request), reports the result only through the private
``request.state.view_rate_limit``, and rendering headers from it needs ``get_window_stats``: two
more round trips (GET, TTL). Instead a hit is one ``incr`` on the storage (what the fixed-window
strategy's ``hit`` does, keeping the count it returns): the count gives ``Remaining``; the end of
the window is known from its first hit (this worker opened it: now + the window) or read once per
window per worker (``get_expiry``) and remembered until its last second.

Where the count runs: ``memory://`` in place (microseconds; ``limits``' memory storage, less the
thread it would start every 10 ms: :class:`_MemoryCounters`); ``redis://``,
``rediss://``, ``redis+unix://`` on the event loop through ``limits.aio`` (the async twin of the
same storage; slowapi 0.1.10 has no async storage) over a ``redis.asyncio`` connection pool of this
limiter, opened on first use and closed by :meth:`RateLimits.aclose`; any other storage slowapi
accepts, in a worker thread. Measured with ``scripts/bench ratelimit`` (one worker, concurrency
8, authenticated ``GET /v1/domains``): ``redis://`` through ``limits.aio`` reaches 0.90-1.08 of the
``memory://`` throughput, against 0.79-0.99 with the synchronous storage in a worker thread and
0.70-0.86 with slowapi's synchronous counting on the event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import redis.asyncio
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage as AsyncRedisStorage
from limits.storage import MemoryStorage, Storage
from slowapi import Limiter
from starlette.requests import Request

from shipmail.http.errors import RateLimited

# slowapi reads a ``.env`` of the working directory unless given a file: give it an empty one.
_EMPTY_CONFIG = str(Path(__file__).with_name("ratelimit.env"))
KEY_PREFIX = "shipmail"
#: Remembered window resets beyond this many are pruned of the passed ones.
_MAX_REMEMBERED = 4096
#: A remembered reset is trusted until this many seconds before it (clocks and the storage's own
#: expiry may differ slightly); in a window's last second its reset is read from the storage.
_MARGIN = 1.0
#: Seconds between two sweeps of expired counters out of the ``memory://`` storage.
_PURGE_SECONDS = 1.0


class _MemoryCounters(MemoryStorage):
    """``limits``' :class:`~limits.storage.MemoryStorage` without its expiry thread.

    Upstream (limits 5.8) starts a ``threading.Timer`` of 10 ms on every ``incr`` whose previous
    timer has finished: under load a new thread about every 10 ms, started and joined on the
    event loop (12 % of the CPU of an authenticated request, measured). The counts are the same:
    an expired counter is dropped whenever it is read (``get``, called by ``incr``), and every
    expired counter is swept out at most every :data:`_PURGE_SECONDS` from ``incr`` itself, so
    memory stays bounded by the keys seen within a window."""

    def __init__(self) -> None:
        super().__init__()
        self._next_purge = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces the private timer start
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_SECONDS
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


class Tier(StrEnum):
    """Rate-limit tiers (``x-rate-limit-tier``)."""

    READ = "read"
    WRITE = "write"
    VERIFICATION = "verification"
    SEND = "send"


def bucket_key(tier: Tier, key_id: str, organization_id: str, path: dict[str, str], operation_id: str) -> str:
    """Whose bucket a request counts against: the API key's for ``read`` and ``write``; for
    ``verification`` the object of the path (``{id}``) within the caller's organisation and the
    operation, so one domain's checks are limited whichever key asks, and another organisation
    cannot spend them."""
    if tier is Tier.VERIFICATION:
        return f"{organization_id}/{path.get('id', '')}/{operation_id}"
    return key_id


def _key_of(request: Request) -> str:
    return str(request.state.principal.key_id)


@dataclass(frozen=True)
class Window:
    """The state of a bucket right after one hit."""

    limit: int
    #: Hits left in the window (0 when over the limit).
    remaining: int
    #: When the window ends (unix seconds).
    reset: float
    allowed: bool

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset)),
        }


_ASYNC_SCHEMES = {"redis": "redis", "rediss": "rediss", "redis+unix": "unix"}  # -> redis-py's scheme


class RateLimits:
    """The limiter of one app: counts per key and tier (:meth:`check`), renders the headers."""

    def __init__(self, storage_uri: str, limits: dict[Tier, str]) -> None:
        self.limits = limits
        self.limiter = Limiter(
            key_func=_key_of,
            storage_uri=storage_uri,
            strategy="fixed-window",
            headers_enabled=False,
            config_filename=_EMPTY_CONFIG,
            key_prefix=KEY_PREFIX,
        )
        self._items: dict[Tier, RateLimitItem] = {tier: parse(value) for tier, value in limits.items()}
        self._storage: Storage = self.limiter.limiter.storage
        if isinstance(self._storage, MemoryStorage):  # the same counters, without a thread per 10 ms
            self._storage = _MemoryCounters()
        self._in_thread = not isinstance(self._storage, MemoryStorage)
        scheme = urlsplit(storage_uri).scheme
        self._async_uri = storage_uri if scheme in _ASYNC_SCHEMES else None
        self._async: AsyncRedisStorage | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._pool: redis.asyncio.ConnectionPool | None = None
        #: bucket -> end of its current window, as learnt by this worker.
        self._resets: dict[str, float] = {}
        self._buckets: dict[tuple[Tier, str], tuple[RateLimitItem, str, int]] = {}

    def _bucket(self, tier: Tier, key_id: str) -> tuple[RateLimitItem, str, int]:
        """The tier's limit, the storage key of ``key_id``'s bucket and its expiry (s), made once
        per bucket (at most :data:`_MAX_REMEMBERED` kept)."""
        found = self._buckets.get((tier, key_id))
        if found is None:
            if len(self._buckets) >= _MAX_REMEMBERED:
                self._buckets.clear()
            item = self._items[tier]
            found = self._buckets[(tier, key_id)] = (
                item,
                item.key_for(KEY_PREFIX, key_id, tier.value),
                item.get_expiry(),
            )
        return found

    def _known_reset(self, bucket: str, count: int, expiry: int, now: float) -> float | None:
        """The end of the bucket's window if known without asking the storage."""
        if count == 1:  # this hit opened the window
            return self._remember(bucket, now + expiry, now)
        remembered = self._resets.get(bucket, 0.0)
        return remembered if now < remembered - _MARGIN else None

    def _remember(self, bucket: str, reset: float, now: float) -> float:
        if len(self._resets) >= _MAX_REMEMBERED:
            self._resets = {k: v for k, v in self._resets.items() if v > now}
        self._resets[bucket] = reset
        return reset

    def count(self, tier: Tier, key_id: str) -> Window:
        """One hit on slowapi's (synchronous) storage: blocking unless it is ``memory://``."""
        item, bucket, expiry = self._bucket(tier, key_id)
        count = self._storage.incr(bucket, expiry)
        now = time.time()
        reset = self._known_reset(bucket, count, expiry, now)
        if reset is None:  # opened by another worker, or in its last second: ask the storage
            reset = self._remember(bucket, self._storage.get_expiry(bucket), now)
        return Window(item.amount, max(0, item.amount - count), reset, count <= item.amount)

    async def hit(self, tier: Tier, key_id: str) -> Window:
        """One hit on the ``tier`` bucket of ``key_id``, never blocking the event loop."""
        if self._async_uri is None:
            return await asyncio.to_thread(self.count, tier, key_id) if self._in_thread else self.count(tier, key_id)
        storage = self._async_storage()
        item, bucket, expiry = self._bucket(tier, key_id)
        count = await storage.incr(bucket, expiry)
        now = time.time()
        reset = self._known_reset(bucket, count, expiry, now)
        if reset is None:
            reset = self._remember(bucket, await storage.get_expiry(bucket), now)
        return Window(item.amount, max(0, item.amount - count), reset, count <= item.amount)

    def _async_storage(self) -> AsyncRedisStorage:
        """The ``limits.aio`` Redis storage of the running event loop (its pool is per loop)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            assert self._async_uri is not None
            scheme, _, rest = self._async_uri.partition("://")
            self._pool = redis.asyncio.ConnectionPool.from_url(f"{_ASYNC_SCHEMES[scheme]}://{rest}")
            self._async = AsyncRedisStorage(
                "async+" + self._async_uri,
                implementation="redispy",
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
            self._async_loop = loop
        return self._async

    async def aclose(self) -> None:
        """Close the Redis connections of the running loop (the app's lifespan calls this)."""
        if self._pool is not None:
            await self._pool.aclose()
        self._pool = self._async = self._async_loop = None

    async def check(self, tier: Tier, key_id: str) -> dict[str, str]:
        """Count one request of API key ``key_id`` against its ``tier`` bucket; the
        ``X-RateLimit-*`` headers to send. Raises :class:`~shipmail.http.errors.RateLimited`
        (429 with those headers and ``Retry-After``) when the bucket is spent."""
        window = await self.hit(tier, key_id)
        headers = window.headers()
        if not window.allowed:
            retry_after = max(1, math.ceil(window.reset - time.time()))
            raise RateLimited(
                f"Rate limit exceeded for the '{tier.value}' tier: retry in {retry_after} s.",
                retry_after=retry_after,
                headers=headers,
            )
        return headers
