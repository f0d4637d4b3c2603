"""Prefixed public identifiers (``org_``, ``key_``, ``dom_``, ``mbx_``).

An id is its prefix followed by 24 characters of Crockford base32 drawn from
:func:`secrets.token_bytes` (120 bits), e.g. ``mbx_5v0k3q9w2c7m1x8r4t6y0z2a``.
"""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str) -> str:
    """A fresh random id ``<prefix>_<24 base32 chars>``."""
    value = int.from_bytes(secrets.token_bytes(15), "big")
    chars = []
    for _ in range(24):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return f"{prefix}_{''.join(chars)}"


def has_prefix(value: str, prefix: str) -> bool:
    """Whether ``value`` looks like an id with ``prefix`` (cheap check before a lookup)."""
    return value.startswith(prefix + "_") and 1 < len(value) <= 64
