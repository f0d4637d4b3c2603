"""Bearer authentication of API keys (RFC 6750) with authlib's resource-protector pieces.

authlib parses the ``Authorization`` header and validates the token (expired, revoked, scope);
the lookup of the key by its digest is ours and asynchronous.

Errors: :class:`~shipmail.http.errors.AuthenticationFailed` (401, with ``WWW-Authenticate``) for a
missing, malformed, unknown, revoked or expired key; :class:`~shipmail.http.errors.PermissionDenied`
(403) for a missing scope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from authlib.oauth2.rfc6749 import ResourceProtector, TokenMixin
from authlib.oauth2.rfc6749.errors import MissingAuthorizationError, UnsupportedTokenTypeError
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError, InvalidTokenError
from starlette.requests import Request

from shipmail.auth.keys import looks_like_key
from shipmail.auth.scopes import Scope, grants
from shipmail.http.errors import AuthenticationFailed, PermissionDenied


@dataclass(frozen=True)
class Principal(TokenMixin):  # type: ignore[misc]
    """An authenticated API key: who calls (organisation) and what it may do (scopes)."""

    key_id: str
    organization_id: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    revoked_at: datetime | None

    def get_scope(self) -> str:
        return " ".join(self.scopes)

    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(timezone.utc)

    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def has(self, scope: Scope) -> bool:
        return grants(self.scopes, scope)


class ApiKeyValidator(BearerTokenValidator):  # type: ignore[misc]
    """Token validation with Shipmail's scope rules (``*``, write implies read)."""

    def authenticate_token(self, token_string: str) -> Any:  # pragma: no cover - async lookup instead
        raise NotImplementedError("keys are looked up asynchronously; see BearerAuth.authenticate")

    @staticmethod
    def scope_insufficient(token_scopes: str, required_scopes: list[str]) -> bool:
        if not required_scopes:
            return False
        held = token_scopes.split()
        return not any(grants(held, Scope(s)) for s in required_scopes)


KeyLookup = Callable[[str], Awaitable[Principal | None]]


class BearerAuth:
    """Authenticates a request's API key; ``lookup(key)`` returns the Principal or None."""

    def __init__(self, lookup: KeyLookup) -> None:
        self._lookup = lookup
        self._protector = ResourceProtector()
        self._validator = ApiKeyValidator(realm="shipmail")
        self._protector.register_token_validator(self._validator)

    async def authenticate(self, request: Request, scope: Scope | None) -> Principal:
        """The caller's Principal, after checking it may use ``scope`` (None: any valid key)."""
        try:
            _validator, token_string = self._protector.parse_request_authorization(request)
        except MissingAuthorizationError:
            raise AuthenticationFailed(
                "Missing API key: send 'Authorization: Bearer sm_live_...'.", error="invalid_request"
            ) from None
        except UnsupportedTokenTypeError:
            raise AuthenticationFailed(
                "Unsupported authorization scheme: use 'Authorization: Bearer sm_live_...'.",
                error="invalid_request",
            ) from None
        token_string = token_string.strip()
        if not looks_like_key(token_string):
            raise AuthenticationFailed("Malformed API key.")
        principal = await self._lookup(token_string)
        try:
            self._validator.validate_token(principal, [scope.value] if scope else [], request)
        except InvalidTokenError:
            raise AuthenticationFailed("Invalid API key: unknown, revoked or expired.") from None
        except InsufficientScopeError:
            assert scope is not None
            raise PermissionDenied(f"This API key lacks the '{scope.value}' scope.") from None
        assert principal is not None
        return principal
