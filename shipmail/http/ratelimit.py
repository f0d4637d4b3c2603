"""Per-key rate-limit tiers: slowapi's limiter and storage, one storage round trip per request.

Each operation has the tier its ``x-rate-limit-tier`` gives in Shipmail's reference spec (``read``
or ``write``); all operations of a tier share one fixed-window bucket per API key. Every limited
response carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
(integer unix seconds). Over the limit: :class:`~shipmail.http.errors.RateLimited` (429, with
``Retry-After`` and ``retry_after``).

What does the work: a slowapi :class:`~slowapi.Limiter` reads the storage URI (``memory://``,
``redis://...``) and owns the storage and the ``fixed-window`` strategy of ``limits``
(``Limiter.limiter``); each tier's limit is a ``limits`` item parsed from the setting, counted
under the key slowapi's ``shared_limit(limit, scope=<tier>)`` would use
(``item.key_for("shipmail", <key id>, <tier>)``), so the buckets are the ones slowapi counts and
stay exact across workers sharing Redis.

Why not slowapi's decorators: ``shared_limit``'s wrapper counts synchronously on the event loop
(a blocking Redis call per request), reports the result only through the private
``request.state.view_rate_limit``, and rendering its headers needs ``get_window_stats``: two
more round trips (GET, TTL). Instead one hit is one ``storage.incr`` (what the fixed-window
strategy's ``hit`` does, keeping the count it returns): the count gives ``Remaining``; the window's
reset is known from its first hit (this worker opened it: now + the window) or read once per
window per worker (``storage.get_expiry``) and remembered until its last second. With a network storage
the hit runs in a worker thread, never on the event loop; ``memory://`` is counted in place.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage
from slowapi import Limiter
from starlette.requests import Request
from starlette.responses import Response

from shipmail.http.errors import RateLimited

Endpoint = Callable[[Request], Awaitable[Response]]

# slowapi reads a ``.env`` of the working directory unless given a file: give it an empty one.
_EMPTY_CONFIG = str(Path(__file__).with_name("ratelimit.env"))
KEY_PREFIX = "shipmail"
#: Remembered window resets beyond this many are pruned of the passed ones.
_MAX_REMEMBERED = 4096
#: A remembered reset is trusted until this many seconds before it (clocks and the storage's own
#: expiry may differ slightly); in a window's last second its reset is read from the storage.
_MARGIN = 1.0


class Tier(StrEnum):
    """Rate-limit tiers (``x-rate-limit-tier``)."""

    READ = "read"
    WRITE = "write"


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


class RateLimits:
    """The limiter of one app: counts per key and tier, wraps endpoints, renders the headers."""

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
        self._in_thread = not isinstance(self._storage, MemoryStorage)
        #: bucket -> end of its current window, as learnt by this worker.
        self._resets: dict[str, float] = {}

    def count(self, tier: Tier, key_id: str) -> Window:
        """One hit on the ``tier`` bucket of ``key_id`` (blocking with a network storage)."""
        item = self._items[tier]
        bucket = item.key_for(KEY_PREFIX, key_id, tier.value)
        expiry = item.get_expiry()
        count = self._storage.incr(bucket, expiry)
        now = time.time()
        remembered = self._resets.get(bucket, 0.0)
        if count == 1:  # this hit opened the window
            reset = now + expiry
        elif now < remembered - _MARGIN:
            reset = remembered
        else:  # opened by another worker, or in its last second: ask the storage
            reset = self._storage.get_expiry(bucket)
        if reset != remembered:
            if len(self._resets) >= _MAX_REMEMBERED:
                self._resets = {k: v for k, v in self._resets.items() if v > now}
            self._resets[bucket] = reset
        return Window(item.amount, max(0, item.amount - count), reset, count <= item.amount)

    async def hit(self, tier: Tier, key_id: str) -> Window:
        """:meth:`count`, in a worker thread when the storage is a network one."""
        if self._in_thread:
            return await asyncio.to_thread(self.count, tier, key_id)
        return self.count(tier, key_id)

    def wrap(self, tier: Tier, name: str, endpoint: Endpoint) -> Endpoint:
        """``endpoint`` (the operation ``name``) guarded by the ``tier`` bucket of the caller's key.

        The request must carry ``request.state.principal`` (set by authentication).
        """

        async def limited(request: Request) -> Response:
            window = await self.hit(tier, _key_of(request))
            headers = window.headers()
            if not window.allowed:
                retry_after = max(1, math.ceil(window.reset - time.time()))
                raise RateLimited(
                    f"Rate limit exceeded for the '{tier.value}' tier: retry in {retry_after} s.",
                    retry_after=retry_after,
                    headers=headers,
                )
            response = await endpoint(request)
            response.headers.update(headers)
            return response

        limited.__name__ = limited.__qualname__ = f"ratelimited_{name}"
        return limited

    def reset(self) -> None:
        """Forget every counter (tests)."""
        self.limiter.reset()
        self._resets.clear()
