"""Per-key rate-limit tiers with slowapi (storage ``memory://`` or ``redis://``).

Each operation has the tier its ``x-rate-limit-tier`` gives in Shipmail's reference spec
(``read`` or ``write``); all operations of a tier share one bucket per API key. Every limited
response carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
(integer unix seconds). Over the limit: :class:`~shipmail.http.errors.RateLimited` (429, with
``Retry-After`` and ``retry_after``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from starlette.requests import Request
from starlette.responses import Response

from shipmail.http.errors import RateLimited

Endpoint = Callable[[Request], Awaitable[Response]]

# slowapi reads a ``.env`` of the working directory unless given a file: give it an empty one.
_EMPTY_CONFIG = str(Path(__file__).with_name("ratelimit.env"))


class Tier(StrEnum):
    """Rate-limit tiers (``x-rate-limit-tier``)."""

    READ = "read"
    WRITE = "write"


def _key_of(request: Request) -> str:
    return str(request.state.principal.key_id)


class RateLimits:
    """The limiter of one app: wraps endpoints per tier and renders the headers."""

    def __init__(self, storage_uri: str, limits: dict[Tier, str]) -> None:
        self.limits = limits
        self.limiter = Limiter(
            key_func=_key_of,
            storage_uri=storage_uri,
            strategy="fixed-window",
            headers_enabled=False,
            config_filename=_EMPTY_CONFIG,
            key_prefix="shipmail",
        )

    def wrap(self, tier: Tier, name: str, endpoint: Endpoint) -> Endpoint:
        """``endpoint`` guarded by the shared ``tier`` bucket of the caller's key.

        The request must carry ``request.state.principal`` (set by authentication).
        """

        async def limited(request: Request) -> Response:
            return await endpoint(request)

        limited.__name__ = f"ratelimited_{name}"
        limited.__qualname__ = limited.__name__
        guarded = self.limiter.shared_limit(self.limits[tier], scope=tier.value, key_func=_key_of)(limited)

        async def call(request: Request) -> Response:
            try:
                response: Response = await guarded(request)
            except RateLimitExceeded:
                headers, reset = self._headers(request)
                retry_after = max(1, math.ceil(reset - time.time()))
                raise RateLimited(
                    f"Rate limit exceeded for the '{tier.value}' tier: retry in {retry_after} s.",
                    retry_after=retry_after,
                    headers=headers,
                ) from None
            headers, _ = self._headers(request)
            response.headers.update(headers)
            return response

        return call

    def _headers(self, request: Request) -> tuple[dict[str, str], float]:
        current: Any = getattr(request.state, "view_rate_limit", None)
        if not current:
            return {}, time.time()
        item, args = current
        reset, remaining = self.limiter.limiter.get_window_stats(item, *args)
        headers = {
            "X-RateLimit-Limit": str(item.amount),
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }
        return headers, float(reset)

    def reset(self) -> None:
        """Forget every counter (tests)."""
        self.limiter.reset()
