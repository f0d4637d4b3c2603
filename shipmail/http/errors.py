"""Errors that carry their HTTP status and Shipmail error type, and the error envelope.

Every failure the API answers with is rendered as Shipmail's envelope::

    {"error": {"type": "...", "message": "...", "request_id": "req_...", "details": [...]}}

At most :data:`MAX_DETAILS` details are sent: a request with 100,000 unknown keys gets the first
50 and a message saying how many there were (``... Showing the first 50 of 100,000 problems.``).

Exception tree::

    ShipmailError                    status, type, message, details, headers
     +-- ValidationFailed            422 validation_error   (details: [{field, code, message}])
     +-- AuthenticationFailed        401 authentication_error (WWW-Authenticate: Bearer ...)
     +-- PermissionDenied            403 authorization_error
     +-- OverLimit                   403 over_limit         (an organisation's limit is reached)
     +-- NotFound                    404 not_found
     +-- MethodNotAllowed            405 method_not_allowed (Allow header)
     +-- Conflict                    409 conflict
     +-- PayloadTooLarge             413 (type validation_error)
     +-- RateLimited                 429 rate_limit_error   (Retry-After, retry_after)
     +-- ServiceUnavailable          503 internal_error     (Retry-After)
     +-- InternalError               500 internal_error
"""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.responses import JSONResponse

#: One entry of the envelope's ``details`` (Shipmail ``ErrorDetail``): ``{field, code, message}``.
Detail = dict[str, str]

#: Most details an error carries; the message says how many there were when there are more.
MAX_DETAILS = 50


def detail(field: str, code: str, message: str) -> Detail:
    """A field-level problem: ``field`` is the path in the request (``rules[3].conditions[0].value``,
    ``cursor``, ``body``), ``code`` a stable machine-readable word, ``message`` for people. Never
    the input value itself (it may be a secret)."""
    return {"field": field, "code": code, "message": message}


class ShipmailError(Exception):
    """Base of every error the API renders; subclasses fix ``status_code`` and ``error_type``."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: list[Detail] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        details = details or []
        if len(details) > MAX_DETAILS:
            message = f"{message} Showing the first {MAX_DETAILS} of {len(details):,} problems."
            details = details[:MAX_DETAILS]
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.extra = extra or {}

    def envelope(self, request_id: str) -> dict[str, Any]:
        """The JSON body: ``{"error": {type, message, request_id, details, ...extra}}``."""
        body: dict[str, Any] = {
            "type": self.error_type,
            "message": self.message,
            "request_id": request_id,
            "details": self.details,
        }
        body.update(self.extra)
        return {"error": body}

    def response(self, request_id: str) -> JSONResponse:
        """Render as a JSON response with this error's status and headers."""
        headers = dict(self.headers)
        headers["X-Request-Id"] = request_id
        return JSONResponse(self.envelope(request_id), status_code=self.status_code, headers=headers)


class ValidationFailed(ShipmailError):
    """422: the request is well-formed HTTP but its content is invalid."""

    status_code = 422
    error_type = "validation_error"


class AuthenticationFailed(ShipmailError):
    """401: no usable API key (missing, malformed, unknown, revoked or expired)."""

    status_code = 401
    error_type = "authentication_error"

    def __init__(self, message: str, *, error: str = "invalid_token") -> None:
        super().__init__(
            message,
            headers={"WWW-Authenticate": f'Bearer realm="shipmail", error="{error}"'},
        )


class PermissionDenied(ShipmailError):
    """403: the key is valid but lacks the operation's scope."""

    status_code = 403
    error_type = "authorization_error"


class OverLimit(ShipmailError):
    """403: the organisation has reached one of its limits (e.g. its number of mailboxes)."""

    status_code = 403
    error_type = "over_limit"


class NotFound(ShipmailError):
    """404: no such object, or it belongs to another organisation (never 403)."""

    status_code = 404
    error_type = "not_found"


class MethodNotAllowed(ShipmailError):
    """405: the path exists but not with this method (``Allow`` lists the methods). Its own type:
    ``validation_error`` would make Shipmail's SDK raise a 422 ``ValidationError``; an unknown
    type becomes its generic ``ShipmailError`` with the real status."""

    status_code = 405
    error_type = "method_not_allowed"


class Conflict(ShipmailError):
    """409: the request conflicts with the current state (duplicates, dependants)."""

    status_code = 409
    error_type = "conflict"


class PayloadTooLarge(ShipmailError):
    """413: the request body is larger than ``SHIPMAIL_MAX_BODY_BYTES``."""

    status_code = 413
    error_type = "validation_error"


class RateLimited(ShipmailError):
    """429: the key's tier limit is used up; ``retry_after`` is in whole seconds."""

    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int, headers: dict[str, str]) -> None:
        super().__init__(
            message,
            headers={**headers, "Retry-After": str(retry_after)},
            extra={"retry_after": retry_after},
        )


class ServiceUnavailable(ShipmailError):
    """503: a dependency (the mail server, the database) is down or too slow."""

    status_code = 503
    error_type = "internal_error"

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class InternalError(ShipmailError):
    """500: an unexpected failure; logged with the request id, never with secrets."""

    status_code = 500
    error_type = "internal_error"
