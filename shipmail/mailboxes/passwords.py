"""Mailbox passwords: policy, argon2id hashing, generation.

Policy (Shipmail's ``createMailbox``/``resetMailboxPassword``): 8-128 characters (code points, so
up to 512 UTF-8 bytes) with a lower-case letter, an upper-case letter and a digit and no control
character; common or easily guessed passwords are refused, judged by zxcvbn (Dropbox's estimator
with its frequency lists of leaked passwords, words and names): a score below 2 (fewer than 10^6
guesses) is refused. zxcvbn's time grows faster than the length (about 0.2 s for 72 random
characters, 4 s for 128) and zxcvbn 4.5 refuses more than 72 characters (``ValueError``, its
``max_length``), so it judges the first :data:`ZXCVBN_MAX_LENGTH` characters: a password whose
start is easy to guess is refused however it ends. The whole password is hashed and checked at
login (argon2 has no length limit; libsasl carries up to 8 KiB to the login checker, see
:mod:`shipmail.mailserver.authd`). Only the argon2id hash (argon2-cffi defaults, PHC string) is
ever stored.
"""

from __future__ import annotations

import asyncio
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

from shipmail.mailboxes.schemas import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH

#: Length limits in characters (code points), Shipmail's documented 8-128 (one definition, in
#: the wire schema).
MIN_LENGTH = PASSWORD_MIN_LENGTH
MAX_LENGTH = PASSWORD_MAX_LENGTH
MIN_ZXCVBN_SCORE = 2
#: How many leading characters zxcvbn judges (its own ``max_length`` default).
ZXCVBN_MAX_LENGTH = 72

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
        result = zxcvbn(password[:ZXCVBN_MAX_LENGTH], max_length=ZXCVBN_MAX_LENGTH)
        if result["score"] < MIN_ZXCVBN_SCORE:
            if len(password) > ZXCVBN_MAX_LENGTH:
                problems.append(f"is too common or easy to guess (judged on its first {ZXCVBN_MAX_LENGTH} characters)")
            else:
                problems.append("is too common or easy to guess")
    return problems


async def policy_problems_async(password: str) -> list[str]:
    """:func:`policy_problems` in a worker thread (zxcvbn takes up to about 0.2 s of CPU), so the
    event loop keeps serving."""
    return await asyncio.to_thread(policy_problems, password)


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
