"""Secrets of a domain encrypted at rest with the service secret (``SHIPMAIL_SECRET_KEY``).

AES-256-GCM (``cryptography``) under a key derived from the service secret with HKDF-SHA256
(info ``shipmail domain secret v1``); a fresh 96-bit nonce per value; the domain id is the
associated data, so a ciphertext copied onto another domain's row does not decrypt. Stored form:
``v1.`` + URL-safe base64 of nonce + ciphertext + tag. Changing the service secret makes the stored
values unreadable (:class:`UndecryptableSecret`): the DKIM keys are then made anew on first use.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"shipmail domain secret v1"
_PREFIX = "v1."
_NONCE = 12


class UndecryptableSecret(Exception):
    """The stored value is not ours, was made under another service secret, or was altered."""


def _key(service_secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(service_secret)


def encrypt(service_secret: bytes, plaintext: bytes, *, bound_to: str) -> str:
    """The stored form of ``plaintext``, decryptable only with the same secret and ``bound_to``."""
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(_key(service_secret)).encrypt(nonce, plaintext, bound_to.encode())
    return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def decrypt(service_secret: bytes, stored: str, *, bound_to: str) -> bytes:
    """The plaintext of :func:`encrypt`'s ``stored``; :class:`UndecryptableSecret` otherwise."""
    if not stored.startswith(_PREFIX):
        raise UndecryptableSecret("unknown format")
    try:
        raw = base64.urlsafe_b64decode(stored[len(_PREFIX) :].encode("ascii"))
        return AESGCM(_key(service_secret)).decrypt(raw[:_NONCE], raw[_NONCE:], bound_to.encode())
    except (InvalidTag, ValueError) as exc:
        raise UndecryptableSecret(type(exc).__name__) from None
