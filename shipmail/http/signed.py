"""Presigned URLs: a path that works without an API key until it expires.

Shipmail hands out "private" URLs for transfers a client makes outside its Bearer-authenticated
calls: the download of a finished mailbox export (``getMailboxExport``'s ``download_url``, valid for
at most five minutes) and the upload of an import file (``createMailboxImportUpload``'s
``upload_url``). Such a URL is ``<path>?expires=<unix seconds>&signature=<hex>``, the signature
being HMAC-SHA256 under the service's secret key (``SHIPMAIL_SECRET_KEY``) of the method, the path
and the expiry. :func:`verify` checks it in constant time; any change of method, path or expiry,
and any use after the expiry, fails (404 from the caller: a bad signature reveals nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from pydantic import Field

from shipmail.http.schemas import Query

_DOMAIN = b"shipmail presigned url v1"


class SignedQuery(Query):
    """The query parameters of a presigned URL."""

    expires: int = Field(ge=0, le=2**40, description="Unix time (seconds) after which the URL stops working.")
    signature: str = Field(
        min_length=64,
        max_length=64,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="HMAC-SHA256 signature of the URL (hex).",
    )


def _mac(secret: bytes, method: str, path: str, expires: int) -> str:
    message = b"\n".join([_DOMAIN, method.upper().encode(), path.encode(), str(expires).encode()])
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, method: str, path: str, expires: int) -> str:
    """``path`` with the ``expires`` (unix seconds) and ``signature`` query parameters."""
    return f"{path}?{urlencode({'expires': expires, 'signature': _mac(secret, method, path, expires)})}"


def verify(secret: bytes, method: str, path: str, expires: int, signature: str, *, now: float | None = None) -> bool:
    """Whether ``signature`` signs ``method path`` until ``expires`` and that time has not passed."""
    if (now if now is not None else time.time()) > expires:
        return False
    given = signature.lower().encode("utf-8", "surrogatepass")  # bytes: compare_digest refuses non-ASCII str
    return hmac.compare_digest(_mac(secret, method, path, expires).encode(), given)
