"""JMAP errors mapped onto the API's errors (RFC 8620 sections 3.6.1, 3.6.2, 5.3).

Exception tree (beyond :mod:`shipmail.http.errors`, whose classes :func:`from_jmap` returns)::

    ShipmailError
     ├── QuotaExceeded (403 quota_exceeded: ``overQuota``)
     └── InternalError
          └── MissingResponse (a call without its response)

Request-level problems (HTTP errors, timeouts, refused connections) become
:class:`~shipmail.http.errors.ServiceUnavailable` (503 with ``Retry-After``); method errors and
SetErrors map as follows:

| JMAP type | status |
|---|---|
| notFound, accountNotFound | 404 |
| invalidArguments, invalidProperties, invalidPatch, unsupportedFilter, unsupportedSort,      | 422 |
| anchorNotFound, invalidResultReference, tooLarge, tooManyKeywords, tooManyMailboxes,       |     |
| blobNotFound, invalidEmail, invalidScript, invalidSieve                                    |     |
| stateMismatch, alreadyExists, mailboxHasChild, mailboxHasEmail, singleton, forbidden,       | 409 |
| willDestroy, scriptIsActive                                                                |     |
| rateLimit, serverUnavailable, serverPartialFail | 503 |
| overQuota | 403 quota_exceeded |
| anything else (serverFail, unknownMethod, ...) | 500 |
"""

from __future__ import annotations

from typing import Any

from shipmail.http.errors import Conflict, InternalError, NotFound, ServiceUnavailable, ShipmailError, ValidationFailed

_NOT_FOUND = {"notFound", "accountNotFound"}
_INVALID = {
    "invalidArguments",
    "invalidProperties",
    "invalidPatch",
    "unsupportedFilter",
    "unsupportedSort",
    "anchorNotFound",
    "invalidResultReference",
    "tooLarge",
    "tooManyKeywords",
    "tooManyMailboxes",
    "blobNotFound",
    "invalidEmail",
    "invalidScript",
    "invalidSieve",
}
_CONFLICT = {
    "stateMismatch",
    "alreadyExists",
    "mailboxHasChild",
    "mailboxHasEmail",
    "singleton",
    "forbidden",
    "willDestroy",
    "scriptIsActive",
}
_UNAVAILABLE = {"rateLimit", "serverUnavailable", "serverPartialFail", "requestTooLarge"}


class MissingResponse(InternalError):
    """500: the server's answer lacks the response to one of the request's calls (a server bug)."""


class QuotaExceeded(ShipmailError):
    """403: the mail server's quota refused the write."""

    status_code = 403
    error_type = "quota_exceeded"


def _detail(err: dict[str, Any], field: str | None) -> list[dict[str, str]]:
    props = err.get("properties") or []
    if props:
        return [
            {"field": str(p), "code": str(err.get("type")), "message": str(err.get("description") or err.get("type"))}
            for p in props
        ]
    if field:
        return [
            {"field": field, "code": str(err.get("type")), "message": str(err.get("description") or err.get("type"))}
        ]
    return []


def from_jmap(err: dict[str, Any], *, what: str = "request", field: str | None = None) -> ShipmailError:
    """The API error for a JMAP method error or SetError object ``err`` (``{"type", ...}``)."""
    kind = str(err.get("type") or "serverFail")
    description = err.get("description")
    message = f"The mail server refused the {what} ({kind})" + (f": {description}" if description else ".")
    if kind in _NOT_FOUND:
        return NotFound(message)
    if kind in _INVALID:
        return ValidationFailed(message, details=_detail(err, field))
    if kind in _CONFLICT:
        return Conflict(message)
    if kind in _UNAVAILABLE:
        return ServiceUnavailable("The mail server is busy or unavailable; retry shortly.")
    if kind == "overQuota":
        return QuotaExceeded(message)
    return InternalError(message)
