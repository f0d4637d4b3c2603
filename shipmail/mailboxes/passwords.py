"""Mailbox passwords: policy, argon2id hashing, generation.

Policy (Shipmail's): 8-128 characters with a lower-case letter, an upper-case letter and a digit;
common or easily guessed passwords are refused, judged by zxcvbn (Dropbox's estimator with its
frequency lists of leaked passwords, words and names): a score below 2 (fewer than 10^6 guesses)
is refused. Only the argon2id hash (argon2-cffi defaults, PHC string) is ever stored.
"""

from __future__ import annotations

import asyncio
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

MIN_LENGTH = 8
MAX_LENGTH = 128
MIN_ZXCVBN_SCORE = 2

_hasher = PasswordHasher()


def policy_problems(password: str) -> list[str]:
    """Why ``password`` is refused (empty list: acceptable). Messages never echo the password."""
    problems = []
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        problems.append(f"must be {MIN_LENGTH}-{MAX_LENGTH} characters long")
    if not any(c.islower() for c in password):
        problems.append("must contain a lower-case letter")
    if not any(c.isupper() for c in password):
        problems.append("must contain an upper-case letter")
    if not any(c.isdigit() for c in password):
        problems.append("must contain a digit")
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        problems.append("must not contain control characters")
    if not problems:
        # zxcvbn looks at the first 100 characters; enough for a guessability verdict.
        result = zxcvbn(password[:100])
        if result["score"] < MIN_ZXCVBN_SCORE:
            problems.append("is too common or easy to guess")
    return problems


def hash_password(password: str) -> str:
    """argon2id PHC string of ``password`` (about 0.1 s of CPU)."""
    return _hasher.hash(password)


async def hash_password_async(password: str) -> str:
    """:func:`hash_password` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(_hasher.hash, password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; False for any malformed hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A strong random password (24 characters, all classes present) that is never shown."""
    alphabet = string.ascii_letters + string.digits
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(24))
        if (
            any(c.islower() for c in candidate)
            and any(c.isupper() for c in candidate)
            and any(c.isdigit() for c in candidate)
        ):
            return candidate
