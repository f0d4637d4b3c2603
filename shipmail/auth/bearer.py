"""Bearer authentication of API keys (RFC 6750) through authlib's resource-server protocol.

authlib's :class:`~authlib.oauth2.rfc6749.ResourceProtector` does the whole check:
``parse_request_authorization`` splits the ``Authorization`` header and picks the Bearer
validator, :meth:`ApiKeyValidator.authenticate_token` finds the key (shape check, then the
injected lookup: HMAC digest, one ``SELECT``), authlib's ``BearerTokenValidator.validate_token``
refuses an unknown, expired or revoked key and checks the scope through
:meth:`ApiKeyValidator.scope_insufficient` (authlib's superset check over the scopes the key
grants under our rules: ``*`` grants all, ``X:write`` implies ``X:read``; see
:mod:`shipmail.auth.scopes`).

authlib's protector is synchronous and reads only headers: :meth:`BearerAuth.authenticate` hands
it :class:`ResourceRequest` (authlib's ``JsonRequest`` built from the Starlette request, as its
Flask and Django integrations build theirs).

Cache: a key's Principal, once looked up, is reused for :data:`KEY_CACHE_SECONDS` counted from
the start of its lookup (:class:`KeyCache`, keyed by the key's SHA-256, never the key itself).
A request whose key is cached is checked entirely on the event loop (no database, no thread);
otherwise the whole check runs in one worker thread, so the blocking lookup never runs on the
loop. Unknown keys are never cached (a key created a moment ago works at once); expiry is checked
against the clock on every request. Revocation: :func:`forget_key` (called by
:func:`shipmail.keys.service.revoke_key` after its commit) drops the key from every cache of this
process at once; a key revoked by another process (``shipmail keys revoke``, another worker)
stops working at most :data:`KEY_CACHE_SECONDS` after the revocation committed.

Errors (the envelope and statuses of :mod:`shipmail.http.errors`, not authlib's bodies):
:class:`~shipmail.http.errors.AuthenticationFailed` (401, ``WWW-Authenticate: Bearer ...``) for a
missing, malformed, unknown, revoked or expired key; :class:`~shipmail.http.errors.PermissionDenied`
(403) for a missing scope.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from authlib.oauth2.rfc6749 import JsonRequest, ResourceProtector, TokenMixin, TokenValidator
from authlib.oauth2.rfc6749.errors import MissingAuthorizationError, UnsupportedTokenTypeError
from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError, InvalidTokenError
from cachetools import TLRUCache
from starlette.requests import Request

from shipmail import utc
from shipmail.auth.keys import looks_like_key
from shipmail.auth.scopes import Scope, granted
from shipmail.http.errors import AuthenticationFailed, PermissionDenied

REALM = "shipmail"

#: Seconds a looked-up key is trusted without asking the database again: the longest a key
#: revoked by another process keeps working (README, "API keys").
KEY_CACHE_SECONDS = 5.0
#: Keys remembered at most (least recently used dropped first).
KEY_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Principal(TokenMixin):  # type: ignore[misc]
    """An authenticated API key (authlib's token): who calls (organisation) and what it may do."""

    key_id: str
    organization_id: str
    #: The scopes the key holds, as stored (``*`` not expanded).
    scopes: tuple[str, ...]
    expires_at: datetime | None
    revoked_at: datetime | None
    #: The only mailboxes the key may see (``shipmail keys create --mailbox``), or None for every
    #: mailbox of the organisation: ``GET /v1/capabilities`` shows it as ``constraints.mailbox_ids``
    #: (enforced by :func:`shipmail.auth.constraints.check_operation`).
    mailbox_ids: tuple[str, ...] | None = None

    def check_client(self, client: object) -> bool:
        return False  # API keys belong to no OAuth client

    def get_scope(self) -> str:
        return str(list_to_scope(self.scopes))

    def get_expires_in(self) -> int:
        if self.expires_at is None:
            return 0
        return max(0, int((self.expires_at - utc.now()).total_seconds()))

    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utc.now()

    def is_revoked(self) -> bool:
        return self.revoked_at is not None


#: ``lookup(key)``: the Principal of a well-formed key, or None when unknown. Synchronous and
#: blocking: authlib calls it in the worker thread of :meth:`BearerAuth.authenticate`.
KeyLookup = Callable[[str], Principal | None]


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    #: ``clock()`` when the lookup began: the entry expires ``ttl`` after it.
    looked_up_at: float


class KeyCache:
    """Principals of known keys for ``ttl`` seconds after their lookup began (cachetools'
    :class:`~cachetools.TLRUCache`, at most ``maxsize`` keys, keyed by SHA-256 of the key).
    Thread-safe: filled from the lookup thread, read on the event loop, emptied by revocations
    from any thread. ``ttl`` 0 disables it."""

    def __init__(
        self, ttl: float = KEY_CACHE_SECONDS, maxsize: int = KEY_CACHE_SIZE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._revoked: dict[str, float] = {}  # key id -> clock() when forgotten
        self._entries: TLRUCache[bytes, _Entry] = TLRUCache(
            maxsize, lambda _key, entry, _now: entry.looked_up_at + ttl, timer=clock
        )
        _CACHES.add(self)

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def get(self, key: str) -> Principal | None:
        """The cached Principal of ``key``, or None when not cached (or expired)."""
        with self._lock:
            entry = self._entries.get(self._digest(key))
        return entry.principal if entry is not None else None

    def put(self, key: str, principal: Principal, looked_up_at: float) -> None:
        """Remember ``principal`` for ``key``, as read by a lookup that began at ``looked_up_at``."""
        if self.ttl <= 0:
            return
        with self._lock:
            if principal.key_id not in self._forgotten_since(looked_up_at):
                self._entries[self._digest(key)] = _Entry(principal, looked_up_at)

    def forget(self, key_id: str) -> None:
        """Drop every entry of key ``key_id`` (and refuse to store one read before now)."""
        with self._lock:
            for digest, entry in list(self._entries.items()):
                if entry.principal.key_id == key_id:
                    del self._entries[digest]
            self._revoked[key_id] = self.clock()

    def _forgotten_since(self, moment: float) -> set[str]:
        """Keys forgotten at or after ``moment`` (a lookup that began before may have read the
        row before the revocation committed); older marks are pruned."""
        horizon = self.clock() - max(self.ttl, 1.0)
        for key_id in [k for k, at in self._revoked.items() if at < horizon]:
            del self._revoked[key_id]
        return {k for k, at in self._revoked.items() if at >= moment}


#: Every live cache of this process, for :func:`forget_key`.
_CACHES: weakref.WeakSet[KeyCache] = weakref.WeakSet()


def forget_key(key_id: str) -> None:
    """Drop key ``key_id`` from every key cache of this process (after revoking it)."""
    for cache in list(_CACHES):
        cache.forget(key_id)


class NotCached(Exception):
    """The key is not in the cache: the caller looks it up (in a worker thread)."""


class MalformedKey(InvalidTokenError):  # type: ignore[misc]
    """The Bearer token does not have the shape of an API key (never looked up)."""

    description = "Malformed API key."


class ResourceRequest(JsonRequest):  # type: ignore[misc]
    """authlib's resource-server request made from a Starlette request: method, target path,
    headers. A Bearer check reads only the ``Authorization`` header (RFC 6750 section 2.1), so the
    path stands for the URI: building the full URL (``str(request.url)``) cost ~5 us a request."""

    def __init__(self, request: Request) -> None:
        super().__init__(request.method, request.scope.get("path", "/"), request.headers)


class ApiKeyValidator(BearerTokenValidator):  # type: ignore[misc]
    """authlib's Bearer validator for API keys: finds the key, applies Shipmail's scope rules.

    ``lookup`` may raise :class:`NotCached` (the cache-only validator of :class:`BearerAuth`)."""

    def __init__(self, lookup: KeyLookup) -> None:
        super().__init__(realm=REALM)
        self._lookup = lookup

    def authenticate_token(self, token_string: str) -> Principal | None:
        """The key's Principal (None: unknown); raises :class:`MalformedKey` without a lookup."""
        key = token_string.strip()
        if not looks_like_key(key):
            raise MalformedKey(realm=self.realm)
        return self._lookup(key)

    @staticmethod
    def scope_insufficient(token_scopes: str, required_scopes: list[str] | None) -> bool:
        """authlib's check, over every scope the held ones grant (``*``, write implies read)."""
        return bool(TokenValidator.scope_insufficient(_expanded(token_scopes), required_scopes))


@functools.lru_cache(maxsize=1024)
def _expanded(token_scopes: str) -> str:
    """Every scope that the space-separated ``token_scopes`` grant, space-separated (a key's
    scopes are few and fixed: expanded once per distinct set)."""
    return str(list_to_scope(sorted(granted(scope_to_list(token_scopes) or []))))


class BearerAuth:
    """Authenticates a request's API key through authlib's :class:`ResourceProtector`, with the
    Principals of known keys cached in ``cache`` (see the module doc)."""

    def __init__(self, lookup: KeyLookup, cache: KeyCache | None = None) -> None:
        self.cache = cache if cache is not None else KeyCache()
        self._lookup = lookup
        self._protector = ResourceProtector()
        self._protector.register_token_validator(ApiKeyValidator(self._lookup_and_cache))
        self._cached = ResourceProtector()
        self._cached.register_token_validator(ApiKeyValidator(self._from_cache))

    def _lookup_and_cache(self, key: str) -> Principal | None:
        began = self.cache.clock()
        principal = self._lookup(key)
        if principal is not None:
            self.cache.put(key, principal, began)
        return principal

    def _from_cache(self, key: str) -> Principal:
        principal = self.cache.get(key)
        if principal is None:
            raise NotCached
        return principal

    def validate(self, request: JsonRequest, scope: Scope | None) -> Principal:
        """authlib's protocol, synchronously with the (blocking) lookup, whose result it caches;
        raises authlib's errors."""
        principal: Principal = self._protector.validate_request([scope.value] if scope else None, request)
        return principal

    def validate_cached(self, request: JsonRequest, scope: Scope | None) -> Principal:
        """The same from the cache only (never blocks); raises :class:`NotCached` on a miss."""
        principal: Principal = self._cached.validate_request([scope.value] if scope else None, request)
        return principal

    async def authenticate(self, request: Request, scope: Scope | None) -> Principal:
        """The caller's Principal, after checking it may use ``scope`` (None: any valid key).
        A cached key is checked on the event loop; any other in one worker thread."""
        return await self._check(ResourceRequest(request), scope)

    async def authenticate_basic(self, request: Request, scope: Scope | None) -> Principal:
        """The same for a key sent as HTTP Basic credentials ``api:<key>`` (RFC 7617; Mailgun's
        scheme, for :mod:`shipmail.mailgun`): user name ``api``, the API key as the password. 401
        for another scheme or user name, undecodable credentials, and every key :meth:`authenticate`
        refuses; 403 for a missing scope."""
        scheme, _, value = (request.headers.get("authorization") or "").strip().partition(" ")
        if scheme.lower() != "basic":
            raise AuthenticationFailed("Missing credentials: send HTTP Basic 'api:<API key>'.", error="invalid_request")
        try:
            user, colon, key = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise AuthenticationFailed("Malformed HTTP Basic credentials.", error="invalid_request") from None
        if not colon or user != "api":
            raise AuthenticationFailed("Invalid credentials: the user name is 'api', the password an API key.")
        resource = JsonRequest(request.method, str(request.url), {"Authorization": f"Bearer {key}"})
        return await self._check(resource, scope)

    async def _check(self, resource: JsonRequest, scope: Scope | None) -> Principal:
        try:
            try:
                return self.validate_cached(resource, scope)
            except NotCached:
                return await asyncio.to_thread(self.validate, resource, scope)
        except MissingAuthorizationError:
            raise AuthenticationFailed(
                "Missing API key: send 'Authorization: Bearer sm_live_...'.", error="invalid_request"
            ) from None
        except UnsupportedTokenTypeError:
            raise AuthenticationFailed(
                "Unsupported authorization scheme: use 'Authorization: Bearer sm_live_...'.",
                error="invalid_request",
            ) from None
        except MalformedKey:
            raise AuthenticationFailed("Malformed API key.") from None
        except InvalidTokenError:
            raise AuthenticationFailed("Invalid API key: unknown, revoked or expired.") from None
        except InsufficientScopeError:
            assert scope is not None
            raise PermissionDenied(f"This API key lacks the '{scope.value}' scope.") from None

    @staticmethod
    def require(principal: Principal, scope: Scope) -> None:
        """403 :class:`~shipmail.http.errors.PermissionDenied` unless ``principal`` (from
        :meth:`authenticate` with no scope) may use ``scope``: the same rule as
        :meth:`authenticate`, for a caller that counts the request between the two checks."""
        if ApiKeyValidator.scope_insufficient(principal.get_scope(), [scope.value]):
            raise PermissionDenied(f"This API key lacks the '{scope.value}' scope.")
