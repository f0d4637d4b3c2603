"""The IMAP source password at rest: Fernet (AES-128-CBC + HMAC-SHA256, ``cryptography``) under a
key derived from the service secret (``SHIPMAIL_SECRET_KEY``) with HKDF-SHA256 and a purpose
label, so the key serves nothing else. The ciphertext lives in ``mailbox_imports.secret`` only
while the import runs (:mod:`shipmail.imports.service` clears it when the import ends)."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"shipmail import source password v1"


def _fernet(secret_key: bytes) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key)
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret_key: bytes, password: str) -> str:
    return _fernet(secret_key).encrypt(password.encode()).decode("ascii")


def unseal(secret_key: bytes, token: str) -> str | None:
    """The password, or None when the token does not decrypt (another secret key)."""
    try:
        return _fernet(secret_key).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        return None
