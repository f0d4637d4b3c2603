"""Webhook signing secrets: ``whsec_<base64 of 32 random bytes>`` (Standard Webhooks), encrypted
at rest with AES-256-GCM under a key derived from the service's secret key."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets as _random

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh ``whsec_...`` secret (shown to the caller once)."""
    return PREFIX + base64.b64encode(_random.token_bytes(32)).decode()


def _key(service_key: bytes) -> bytes:
    return hashlib.sha256(b"shipmail-webhook-secrets:" + service_key).digest()


def seal(secret: str, service_key: bytes) -> str:
    """``secret`` encrypted for the database (base64 of nonce + ciphertext)."""
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(_key(service_key)).encrypt(nonce, secret.encode(), b"whsec")).decode()


def unseal(sealed: str, service_key: bytes) -> str:
    """The secret :func:`seal` encrypted (raises ``cryptography.exceptions.InvalidTag`` when the
    service key changed)."""
    raw = base64.b64decode(sealed)
    return AESGCM(_key(service_key)).decrypt(raw[:12], raw[12:], b"whsec").decode()
