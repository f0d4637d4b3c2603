"""``Idempotency-Key``: a retried mutating request answers what its first attempt answered.

Shipmail's reference declares the header as ``IdempotencyKey`` (printable ASCII, 1-255
characters, "cached for 24 hours"). Each operation declares how it treats it
(:class:`Idempotency`, ``operation(..., idempotency=...)``; shown in our OpenAPI document as the
header parameter): every mutating operation (POST, PUT, PATCH, DELETE) honours it unless it opts
out with ``REFUSED`` (an operation answering a shown-once secret: a replay would have to keep the
secret), which answers 422 to a request carrying it; reads ignore it.

For an operation that honours it, the routing pipeline (:mod:`shipmail.http.routing`) runs this
after authentication, the rate limit and the validation of body and query (a request refused
there is not remembered, and a retry is counted like any request):

1. :func:`key_of` checks the header (422 ``validation_error``, detail code
   ``invalid_idempotency_key``, when it is not 1-255 printable ASCII characters).
2. :func:`begin` claims (API key, Idempotency-Key) in a transaction of its own
   (:mod:`shipmail.db.idempotency`), with the request's fingerprint: an HMAC of method, path,
   query and body (JSON compared by value: key order and whitespace do not matter). Then:

   - first use (or the previous use expired after :data:`TTL`): the operation runs;
   - used before with another fingerprint (another body, path or method): 422
     ``validation_error``, detail code ``idempotency_key_reused``, nothing runs;
   - finished before with the same fingerprint: the stored response is answered again (status,
     body, ``Content-Type``, ``Location``, ``ETag`` and the other headers of the operation's
     answer) with ``Idempotent-Replayed: true``; nothing runs;
   - the first request is still running: this one waits for its answer (polling the row) up to
     :data:`WAIT_SECONDS`, then answers 409 ``conflict`` with ``Retry-After``. A claim whose
     request died without an answer (process killed) is taken over after :data:`STALE_SECONDS`.

3. :func:`finish` stores the answer: every 2xx and 4xx response the operation gave. A 5xx (the
   mail server or database was unavailable: the failed write left nothing behind) releases the
   key, so the retry runs again; so does an exception or a cancelled request. A response that
   cannot be replayed (streamed, or over :data:`MAX_STORED_BYTES`) is recorded without its body: a
   retry then answers 409 ``conflict`` rather than run twice.

Keys are scoped to the API key that sent them: another key's identical Idempotency-Key is a
different key. Expired rows are deleted by the periodic job :data:`PURGE_JOB` (:func:`purge_job`,
every :data:`PURGE_EVERY` seconds), queued by the first claim a process makes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from shipmail import jobs
from shipmail.db import idempotency as store
from shipmail.db.engine import Database
from shipmail.http.errors import Conflict, ValidationFailed, detail
from shipmail.runtime import Services
from shipmail.utc import now as utcnow

HEADER = "Idempotency-Key"
#: How long a key and its response are kept (the reference: "Cached for 24 hours").
TTL = timedelta(hours=24)
#: How long a request waits for a concurrent request with the same key before answering 409.
WAIT_SECONDS = 10.0
#: A claim older than this whose request never answered (its process died) may be taken over.
STALE_SECONDS = 300
#: Largest response body kept for replay.
MAX_STORED_BYTES = 1024 * 1024
#: ``Retry-After`` (seconds) of the 409 answered while the first request still runs.
RETRY_AFTER = 1
#: The job kind (and key) of the periodic purge of expired keys, and its period in seconds.
PURGE_JOB = "idempotency.purge"
PURGE_EVERY = 3600
#: Databases of this process whose purge job has been queued.
_armed: weakref.WeakSet[Database] = weakref.WeakSet()
#: Printable ASCII, 1-255 characters (the reference's IdempotencyKey parameter).
_VALID = re.compile(r"[\x20-\x7e]{1,255}")
#: Response headers not replayed: they belong to the new request or are recomputed.
_NOT_REPLAYED = frozenset(
    {
        "content-length",
        "date",
        "server",
        "x-request-id",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
        "set-cookie",
    }
)


class Idempotency(StrEnum):
    """How an operation treats ``Idempotency-Key``."""

    #: Reads: the header is ignored.
    IGNORED = "ignored"
    #: The header makes a retry answer the first attempt's response.
    HONOURED = "honoured"
    #: The header is refused with 422 (the response holds a shown-once secret).
    REFUSED = "refused"


def default_for(method: str, authenticated: bool) -> Idempotency:
    """HONOURED for an authenticated mutating method, IGNORED otherwise."""
    if authenticated and method.upper() in {"POST", "PUT", "PATCH", "DELETE"}:
        return Idempotency.HONOURED
    return Idempotency.IGNORED


#: The header parameter in our OpenAPI document (the reference's ``IdempotencyKey``).
PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "Unique key for idempotent requests. Printable ASCII, 1-255 characters. Cached for 24 hours: "
    "a retry with the same key and body answers the first response (Idempotent-Replayed: true); "
    "the same key with another body answers 422 (idempotency_key_reused); while the first request "
    "runs, a retry waits for it (409 after 10 s). Keys are scoped to the API key.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]{1,255}$"},
}


def key_of(request: Request, mode: Idempotency) -> str | None:
    """The request's ``Idempotency-Key`` if ``mode`` honours it; 422 when it is malformed or the
    operation refuses it; None when absent (or ignored)."""
    if mode is Idempotency.IGNORED:
        return None
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    if mode is Idempotency.REFUSED:
        raise ValidationFailed(
            f"{HEADER} is not accepted by this operation: its response holds a secret shown once.",
            details=[detail(HEADER, "idempotency_key_not_allowed", "not accepted by this operation")],
        )
    if len(values) > 1 or not _VALID.fullmatch(values[0]):
        raise ValidationFailed(
            f"{HEADER} must be one value of 1-255 printable ASCII characters.",
            details=[detail(HEADER, "invalid_idempotency_key", "must be 1-255 printable ASCII characters")],
        )
    return values[0]


def fingerprint(secret: bytes, request: Request, body: bytes) -> str:
    """HMAC-SHA256 (hex) of the request's method, path, query and body under ``secret``. A JSON
    body counts by value (canonical form), any other by its bytes."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        canonical = body
    query = sorted(request.query_params.multi_items())
    mac = hmac.new(hashlib.sha256(b"shipmail-idempotency:" + secret).digest(), digestmod=hashlib.sha256)
    for part in (request.method.encode(), request.url.path.encode(), json.dumps(query).encode(), canonical):
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


@dataclass(frozen=True)
class Claim:
    """This request holds (API key, Idempotency-Key): it runs the operation and stores the answer."""

    key_id: str
    key_hash: str
    token: str


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


async def begin(
    db: Database, key_id: str, key: str, print_: str, operation_id: str, *, wait: float | None = None
) -> Claim | Response:
    """Claim ``key`` for API key ``key_id``, or the stored response to answer again. Raises 422
    for a key used with another request, 409 when its first request still runs after ``wait``
    seconds (default :data:`WAIT_SECONDS`)."""
    key_hash = _hash(key)
    token = secrets.token_hex(16)
    deadline = time.monotonic() + (WAIT_SECONDS if wait is None else wait)
    delay = 0.02
    while True:
        now = utcnow()
        async with db.session() as session:
            if await store.insert_claim(session, key_id, key_hash, print_, operation_id, token, now, TTL):
                await _arm_purge(db)
                return Claim(key_id, key_hash, token)
        async with db.session() as session:
            stale = now - timedelta(seconds=STALE_SECONDS)
            if await store.take_over(session, key_id, key_hash, print_, operation_id, token, now, TTL, stale):
                return Claim(key_id, key_hash, token)
            row = await store.read(session, key_id, key_hash)
        if row is None:  # purged or released in between: claim it again
            continue
        if not hmac.compare_digest(row.fingerprint, print_):
            raise ValidationFailed(
                f"This {HEADER} was already used with a different request (method, path or body); "
                "use a new key for a new request.",
                details=[detail(HEADER, "idempotency_key_reused", "already used with a different request")],
            )
        if row.state == store.DONE:
            return replay(store.stored(row))
        if time.monotonic() >= deadline:
            raise Conflict(
                f"A request with this {HEADER} is still being processed; retry after it has finished.",
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


def replay(kept: store.Stored) -> Response:
    """The stored response, marked ``Idempotent-Replayed: true``."""
    if kept.body is None:
        raise Conflict(
            f"The request with this {HEADER} has already been processed (HTTP {kept.status_code}); "
            "its response cannot be replayed. Use a new key for a new request."
        )
    response = Response(kept.body, status_code=kept.status_code)
    for name, value in kept.headers:
        response.headers.append(name, value)
    response.headers["Idempotent-Replayed"] = "true"
    return response


async def finish(db: Database, claim: Claim, response: Response) -> None:
    """Store ``response`` as the answer of ``claim``'s key, or release the key after a 5xx."""
    if response.status_code >= 500:
        await abandon(db, claim)
        return
    body = getattr(response, "body", None)
    kept_body = bytes(body) if isinstance(body, bytes | memoryview) and len(body) <= MAX_STORED_BYTES else None
    headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _NOT_REPLAYED]
    async with db.session() as session:
        await store.complete(
            session, claim.key_id, claim.key_hash, claim.token, store.Stored(response.status_code, headers, kept_body)
        )


async def abandon(db: Database, claim: Claim) -> None:
    """Release ``claim``'s key: the request ended without an answer worth replaying."""
    async with db.session() as session:
        await store.release(session, claim.key_id, claim.key_hash, claim.token)


async def purge(db: Database, now: datetime | None = None) -> int:
    """Delete the expired keys; how many."""
    async with db.session() as session:
        return await store.purge_expired(session, now or utcnow())


async def _arm_purge(db: Database) -> None:
    """Queue the purge job (once per database per process; a queued one is kept as it is)."""
    if db in _armed:
        return
    async with db.session() as session:
        await jobs.enqueue(session, PURGE_JOB, key=PURGE_JOB, run_at=utcnow() + timedelta(seconds=PURGE_EVERY))
        await session.commit()
    _armed.add(db)


async def purge_job(job: jobs.Job, services: Services) -> None:
    """The periodic purge (:data:`PURGE_JOB`): delete the expired keys, run again in an hour."""
    deleted = await purge(services.db)
    raise jobs.Retry(after=PURGE_EVERY, reason=f"periodic: {deleted} expired keys deleted")
