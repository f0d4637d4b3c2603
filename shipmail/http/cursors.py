"""Opaque, signed cursors for keyset pagination.

A cursor is ``base64url(json payload) + "." + base64url(HMAC-SHA256(secret, payload))[:22]``.
The payload binds the cursor to its list (``kind``) and filters, so a cursor replayed on another
list or with other filters is refused with :class:`~shipmail.http.errors.ValidationFailed` (422), as is
any tampered or malformed one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from shipmail.http.errors import ValidationFailed, detail


def invalid_cursor() -> ValidationFailed:
    """422 for a cursor that is malformed, forged, expired or from another list or filters."""
    return ValidationFailed(
        "Invalid cursor: send the next_cursor of the same list with the same filters, unchanged.",
        details=[detail("cursor", "invalid_cursor", "invalid cursor")],
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Encodes and checks cursors under one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = hashlib.sha256(b"shipmail-cursor:" + secret).digest()

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._secret, payload, hashlib.sha256).digest())[:22]

    def encode(self, kind: str, binding: dict[str, Any], position: dict[str, Any]) -> str:
        """A cursor for ``kind`` (list name), ``binding`` (filters) and ``position`` (keyset)."""
        payload = json.dumps({"k": kind, "b": binding, "p": position}, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{self._sign(payload)}"

    def decode(self, cursor: str, kind: str, binding: dict[str, Any]) -> dict[str, Any]:
        """The position stored in ``cursor``; 422 when it is malformed, forged or for other filters."""
        bad = invalid_cursor()
        if len(cursor) > 2048 or not cursor.isascii() or cursor.count(".") != 1:
            raise bad
        body, sig = cursor.split(".")
        try:
            payload = _unb64(body)
        except (ValueError, TypeError):
            raise bad from None
        if not hmac.compare_digest(self._sign(payload), sig):
            raise bad
        try:
            data = json.loads(payload)
        except ValueError:
            raise bad from None
        if data.get("k") != kind or data.get("b") != binding or not isinstance(data.get("p"), dict):
            raise bad
        position: dict[str, Any] = data["p"]
        return position
