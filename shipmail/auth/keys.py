"""API key material: ``sm_live_<40 alphanumerics>``, stored only as HMAC-SHA256 digests.

A key is shown once, at creation. The database keeps ``digest(key)`` (hex HMAC-SHA256 under the
service's secret key) and a 12-character display prefix (``sm_live_AbCd``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

KEY_PREFIX = "sm_live_"
_ALNUM = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"sm_(live|test)_[A-Za-z0-9]{20,128}")
DISPLAY_PREFIX_LENGTH = 12


def generate_key() -> str:
    """A new random key (about 238 bits of entropy)."""
    return KEY_PREFIX + "".join(secrets.choice(_ALNUM) for _ in range(40))


def looks_like_key(value: str) -> bool:
    """Whether ``value`` has the shape of a key (checked before any database lookup)."""
    return bool(_KEY_RE.fullmatch(value))


def key_digest(secret: bytes, key: str) -> str:
    """Hex HMAC-SHA256 of ``key`` under ``secret``: what the database stores and looks up."""
    return hmac.new(secret, key.encode("ascii"), hashlib.sha256).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key that may be shown again (``sm_live_AbCd``)."""
    return key[:DISPLAY_PREFIX_LENGTH]
