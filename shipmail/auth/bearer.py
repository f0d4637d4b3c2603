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
Flask and Django integrations build theirs) and runs it in a worker thread, so the blocking key
lookup never runs on the event loop; one thread hop per request, as before.

No cache: every request looks its key up, so a key revoked through the CLI (another process)
answers 401 on the very next request.

Errors (the envelope and statuses of :mod:`shipmail.http.errors`, not authlib's bodies):
:class:`~shipmail.http.errors.AuthenticationFailed` (401, ``WWW-Authenticate: Bearer ...``) for a
missing, malformed, unknown, revoked or expired key; :class:`~shipmail.http.errors.PermissionDenied`
(403) for a missing scope.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from authlib.oauth2.rfc6749 import JsonRequest, ResourceProtector, TokenMixin, TokenValidator
from authlib.oauth2.rfc6749.errors import MissingAuthorizationError, UnsupportedTokenTypeError
from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError, InvalidTokenError
from starlette.requests import Request

from shipmail import utc
from shipmail.auth.keys import looks_like_key
from shipmail.auth.scopes import Scope, granted
from shipmail.http.errors import AuthenticationFailed, PermissionDenied

REALM = "shipmail"


@dataclass(frozen=True)
class Principal(TokenMixin):  # type: ignore[misc]
    """An authenticated API key (authlib's token): who calls (organisation) and what it may do."""

    key_id: str
    organization_id: str
    #: The scopes the key holds, as stored (``*`` not expanded).
    scopes: tuple[str, ...]
    expires_at: datetime | None
    revoked_at: datetime | None

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


class MalformedKey(InvalidTokenError):  # type: ignore[misc]
    """The Bearer token does not have the shape of an API key (never looked up)."""

    description = "Malformed API key."


class ResourceRequest(JsonRequest):  # type: ignore[misc]
    """authlib's resource-server request made from a Starlette request (method, URL, headers)."""

    def __init__(self, request: Request) -> None:
        super().__init__(request.method, str(request.url), request.headers)


class ApiKeyValidator(BearerTokenValidator):  # type: ignore[misc]
    """authlib's Bearer validator for API keys: finds the key, applies Shipmail's scope rules."""

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
        expanded = list_to_scope(sorted(granted(scope_to_list(token_scopes) or [])))
        return bool(TokenValidator.scope_insufficient(expanded, required_scopes))


class BearerAuth:
    """Authenticates a request's API key through authlib's :class:`ResourceProtector`."""

    def __init__(self, lookup: KeyLookup) -> None:
        self._protector = ResourceProtector()
        self._protector.register_token_validator(ApiKeyValidator(lookup))

    def validate(self, request: ResourceRequest, scope: Scope | None) -> Principal:
        """authlib's protocol, synchronously (blocking lookup); raises authlib's errors."""
        principal: Principal = self._protector.validate_request([scope.value] if scope else None, request)
        return principal

    async def authenticate(self, request: Request, scope: Scope | None) -> Principal:
        """The caller's Principal, after checking it may use ``scope`` (None: any valid key)."""
        try:
            return await asyncio.to_thread(self.validate, ResourceRequest(request), scope)
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
