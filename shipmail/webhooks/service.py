"""Webhooks: the operations, the fan-out of events to deliveries, and the delivery job.

Fan-out (:func:`fan_out`, called by :func:`shipmail.events.service.record` in the event's own
transaction): one ``webhook_deliveries`` row per active webhook of the organisation subscribed to
the event's type, and one ``webhooks.attempt`` job per delivery (:mod:`shipmail.jobs`) with the
ordering key ``<webhook>:<mailbox>``: deliveries of one mailbox to one endpoint go in the order of
the events, a retried one holding back the later ones.

An attempt (:func:`attempt`): ``POST`` of the envelope ``{"type", "timestamp", "data"}`` (JSON)
with the Standard Webhooks headers ``webhook-id`` (the delivery's ``msg_...``, the same on every
attempt and replay), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, by the :mod:`standardwebhooks`
package; during the 24 h after a rotation with the previous secret too, space-separated), and
the two headers the official SDK's ``verify_webhook`` checks (:func:`sdk_headers`), within
:data:`ATTEMPT_TIMEOUT` seconds, no redirects followed. Each attempt is kept (time, status,
duration, the first 1 KiB of the answer). A 2xx answer delivers; anything else retries with
exponential back-off and jitter (:func:`shipmail.jobs.backoff`, base
``SHIPMAIL_WEBHOOK_RETRY_BASE`` seconds, at most 6 h apart) until the delivery is
:data:`GIVE_UP_AFTER` old (then ``failed``); a webhook whose attempts have all failed for
:data:`GIVE_UP_AFTER` is disabled (``active: false``) until ``updateWebhook`` sets it active.

SSRF: URLs must be ``https://`` and resolve only to public addresses (no loopback, private,
link-local, multicast, reserved or cloud metadata address): literal addresses and ``localhost``
are refused at create/update (422), and the host is resolved and every address checked before
each attempt (a refused one fails the attempt); ``SHIPMAIL_WEBHOOK_ALLOW_PRIVATE=1`` lifts both (and allows ``http://``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from pydantic_core import PydanticUndefined
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from standardwebhooks.webhooks import Webhook as Signer

from shipmail import jobs, utc
from shipmail.db import repository
from shipmail.events.models import Event
from shipmail.http.errors import Conflict, NotFound, ValidationFailed, detail
from shipmail.http.listing import cursor_page
from shipmail.ids import new_id
from shipmail.runtime import Services
from shipmail.webhooks import secrets
from shipmail.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery
from shipmail.webhooks.schemas import CreateWebhookRequest, UpdateWebhookRequest

logger = logging.getLogger("shipmail.webhooks")

JOB_KIND = "webhooks.attempt"
#: Seconds one attempt may take (connect, send, answer).
ATTEMPT_TIMEOUT = 10.0
#: A delivery still failing this long after it was made is given up; a webhook failing this
#: long is disabled.
GIVE_UP_AFTER = timedelta(days=3)
#: The previous secret keeps signing this long after a rotation.
ROTATION_GRACE = timedelta(hours=24)
#: Deliveries older than this cannot be replayed.
REPLAY_WINDOW = timedelta(days=30)
#: Longest pause between two attempts, in seconds.
MAX_RETRY_DELAY = 6 * 3600.0
#: Bytes of an answer kept with its attempt.
KEPT_RESPONSE_BYTES = 1024

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


# ----------------------------------------------------------------------------- SSRF guard


def _address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _address_problem(ip.ipv4_mapped)
    if ip in _METADATA:
        return "a cloud metadata address"
    for test, what in (
        (ip.is_loopback, "a loopback address"),
        (ip.is_private, "a private address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_unspecified, "an unspecified address"),
    ):
        if test:
            return what
    return None


def url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a webhook endpoint without looking it up, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in (("https", "http") if allow_private else ("https",)):
        return "must be an https:// URL"
    if not parts.hostname or parts.username or parts.password:
        return "must name a host (and no credentials)"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "must not contain white space or control characters"
    if port == 0:
        return "must not use port 0"
    if allow_private:
        return None
    try:
        literal = ipaddress.ip_address(parts.hostname.strip("[]"))
    except ValueError:
        if parts.hostname.lower() in ("localhost",) or parts.hostname.lower().endswith(".localhost"):
            return "must not point at a loopback address"
        return None
    problem = _address_problem(literal)
    return f"must not point at {problem}" if problem else None


async def resolved_problem(url: str, *, allow_private: bool) -> str | None:
    """:func:`url_problem`, then every address the host resolves to must be public."""
    problem = url_problem(url, allow_private=allow_private)
    if problem or allow_private:
        return problem
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        async with asyncio.timeout(5.0):
            infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except TimeoutError:
        return "does not resolve (timeout)"
    except OSError as exc:
        return f"does not resolve ({exc.strerror or exc})"
    for info in infos:
        problem = _address_problem(ipaddress.ip_address(info[4][0]))
        if problem:
            return f"resolves to {problem}"
    return None


async def _check_url(url: str, allow_private: bool) -> None:
    """422 for a URL refused without a lookup; a host NAME is resolved and checked before each
    attempt (what it resolves to may change after the webhook is made)."""
    problem = url_problem(url, allow_private=allow_private)
    if problem:
        raise ValidationFailed(f"The webhook URL {problem}.", details=[detail("url", "invalid_url", problem)])


# ----------------------------------------------------------------------------- operations


async def get(session: AsyncSession, organization_id: str, webhook_id: str) -> Webhook:
    row = await repository.get_owned(session, Webhook, organization_id, webhook_id)
    if row is None:
        raise NotFound(f"No webhook with id {webhook_id!r}.")
    return row


async def create(
    svc: Services, session: AsyncSession, organization_id: str, body: CreateWebhookRequest
) -> tuple[Webhook, str]:
    """A new webhook and its secret (returned once)."""
    await _check_url(body.url, svc.settings.webhook_allow_private)
    secret = secrets.new_secret()
    now = utc.now()
    row = Webhook(
        id=new_id("whk"),
        organization_id=organization_id,
        url=body.url,
        events=list(dict.fromkeys(body.events)),
        description=body.description,
        secret=secrets.seal(secret, svc.settings.secret_key),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.commit()
    return row, secret


async def list_page(
    svc: Services, session: AsyncSession, organization_id: str, cursor: str | None, limit: int
) -> tuple[list[Webhook], str | None, bool]:
    return await cursor_page(
        session,
        svc.cursors,
        Webhook,
        kind="webhooks",
        binding={"o": organization_id},
        where=[col(Webhook.organization_id) == organization_id],
        cursor=cursor,
        limit=limit,
    )


async def update(
    svc: Services, session: AsyncSession, organization_id: str, webhook_id: str, body: UpdateWebhookRequest
) -> Webhook:
    row = await get(session, organization_id, webhook_id)
    if body.url is not None:
        await _check_url(body.url, svc.settings.webhook_allow_private)
        row.url = body.url
    if body.events is not None:
        row.events = list(dict.fromkeys(body.events))
    if "description" in body.model_fields_set:
        row.description = body.description
    if body.active is not None:
        row.active = body.active
        if body.active:
            row.disabled_at = None
            row.failing_since = None
    row.updated_at = utc.now()
    session.add(row)
    await session.commit()
    return row


async def delete(session: AsyncSession, organization_id: str, webhook_id: str) -> None:
    row = await get(session, organization_id, webhook_id)
    await session.exec(sa.delete(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == row.id))
    await session.delete(row)
    await session.commit()


async def rotate(svc: Services, session: AsyncSession, organization_id: str, webhook_id: str) -> tuple[str, datetime]:
    """A new secret; the current one keeps signing for :data:`ROTATION_GRACE`."""
    row = await get(session, organization_id, webhook_id)
    secret = secrets.new_secret()
    now = utc.now()
    row.previous_secret = row.secret
    row.previous_secret_expires_at = now + ROTATION_GRACE
    row.secret = secrets.seal(secret, svc.settings.secret_key)
    row.updated_at = now
    session.add(row)
    await session.commit()
    assert row.previous_secret_expires_at is not None
    return secret, row.previous_secret_expires_at


def _delivery_values(
    organization_id: str,
    webhook_id: str,
    event_id: str,
    event_type: str,
    mailbox_id: str | None,
    data: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The values a new delivery of an event to a webhook sets (the rest are the model's defaults)."""
    return {
        "id": new_id("whd"),
        "organization_id": organization_id,
        "webhook_id": webhook_id,
        "event_id": event_id,
        "event_type": event_type,
        "mailbox_id": mailbox_id,
        "message_id": new_id("msg"),
        "payload": {"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data},
        "next_attempt_at": now,
        "created_at": now,
    }


def _event_data(event_id: str, mailbox_id: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """An event's ``data`` as its deliveries carry it."""
    return {"event_id": event_id, "mailbox_id": mailbox_id, **data}


def _ordering(webhook_id: str, mailbox_id: str | None) -> str:
    """The job ordering key of a delivery: in order per webhook and mailbox."""
    return f"whk:{webhook_id}:{mailbox_id or '-'}"


def _delivery(
    webhook: Webhook, event_id: str, event_type: str, mailbox_id: str | None, data: dict[str, Any]
) -> WebhookDelivery:
    values = _delivery_values(webhook.organization_id, webhook.id, event_id, event_type, mailbox_id, data, utc.now())
    return WebhookDelivery(**values)


async def _enqueue(session: AsyncSession, delivery: WebhookDelivery) -> None:
    ordering = _ordering(delivery.webhook_id, delivery.mailbox_id)
    await jobs.enqueue(session, JOB_KIND, {"delivery_id": delivery.id}, ordering_key=ordering)


async def send_test(session: AsyncSession, organization_id: str, webhook_id: str) -> str:
    """A ``webhook.test`` delivery to the webhook; the test event's id."""
    row = await get(session, organization_id, webhook_id)
    event_id = new_id("evt")
    delivery = _delivery(row, event_id, "webhook.test", None, {"webhook_id": row.id, "message": "test"})
    session.add(delivery)
    await _enqueue(session, delivery)
    await session.commit()
    return event_id


async def fan_out(session: AsyncSession, event: Event) -> list[WebhookDelivery]:
    """Deliveries (and their jobs) of ``event`` to every active webhook of its organisation that
    subscribes to its type; added to ``session`` (the event's transaction)."""
    hooks = (
        await session.exec(
            select(Webhook).where(col(Webhook.organization_id) == event.organization_id, col(Webhook.active).is_(True))
        )
    ).all()
    made = []
    for hook in hooks:
        if event.type not in hook.events:
            continue
        data = _event_data(event.id, event.mailbox_id, event.data)
        delivery = _delivery(hook, event.id, event.type, event.mailbox_id, data)
        session.add(delivery)
        await _enqueue(session, delivery)
        made.append(delivery)
    return made


_HOOKS: Any = sa.select(Webhook.__table__.c.id, Webhook.__table__.c.events).where(  # type: ignore[attr-defined]
    Webhook.__table__.c.organization_id == sa.bindparam("organization_id"),  # type: ignore[attr-defined]
    Webhook.__table__.c.active.is_(True),  # type: ignore[attr-defined]
)
_INSERT_DELIVERIES = sa.insert(WebhookDelivery.__table__)  # type: ignore[attr-defined]
#: The model's defaults of the columns :func:`_delivery_values` leaves out (a Core ``INSERT`` does
#: not apply them).
_DELIVERY_DEFAULTS: dict[str, Any] = {
    name: f.default
    for name, f in WebhookDelivery.model_fields.items()
    if name not in _delivery_values("", "", "", "", None, {}, utc.now()) and f.default is not PydanticUndefined
}


async def fan_out_many(
    session: AsyncSession, organization_id: str, events: Sequence[tuple[str, str, str | None, dict[str, Any]]]
) -> int:
    """:func:`fan_out` of several events ``(event id, type, mailbox id, data)`` of one organisation,
    in their order, with one read of its webhooks and one ``INSERT`` of the deliveries (and one of
    their jobs, :func:`shipmail.jobs.enqueue_many`); the same rows as :func:`fan_out` makes. The
    number of deliveries made."""
    if not events:
        return 0
    hooks = (await session.exec(_HOOKS, params={"organization_id": organization_id})).all()
    if not hooks:
        return 0
    now = utc.now()
    rows: list[dict[str, Any]] = []
    queued: list[tuple[dict[str, Any], str | None]] = []
    for event_id, event_type, mailbox_id, data in events:
        for hook_id, subscribed in hooks:
            if event_type not in subscribed:
                continue
            values = _delivery_values(
                organization_id, hook_id, event_id, event_type, mailbox_id, _event_data(event_id, mailbox_id, data), now
            )
            rows.append({**_DELIVERY_DEFAULTS, **values})
            queued.append(({"delivery_id": values["id"]}, _ordering(hook_id, mailbox_id)))
    if rows:
        await session.exec(_INSERT_DELIVERIES, params=rows)
        await jobs.enqueue_many(session, JOB_KIND, queued)
    return len(rows)


async def get_delivery(
    session: AsyncSession, organization_id: str, webhook_id: str, delivery_id: str
) -> WebhookDelivery:
    await get(session, organization_id, webhook_id)
    row = await session.get(WebhookDelivery, delivery_id)
    if row is None or row.webhook_id != webhook_id or row.organization_id != organization_id:
        raise NotFound(f"No delivery with id {delivery_id!r}.")
    return row


async def list_deliveries(
    svc: Services,
    session: AsyncSession,
    organization_id: str,
    webhook_id: str,
    *,
    status: str | None,
    event_type: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[WebhookDelivery], str | None, bool]:
    await get(session, organization_id, webhook_id)
    where: list[Any] = [col(WebhookDelivery.webhook_id) == webhook_id]
    if status:
        where.append(col(WebhookDelivery.status) == status)
    if event_type:
        where.append(col(WebhookDelivery.event_type) == event_type)
    return await cursor_page(
        session,
        svc.cursors,
        WebhookDelivery,
        kind="webhook_deliveries",
        binding={"w": webhook_id, "s": status, "t": event_type},
        where=where,
        cursor=cursor,
        limit=limit,
    )


async def replay(session: AsyncSession, organization_id: str, webhook_id: str, delivery_id: str) -> WebhookDelivery:
    """A new delivery of the same envelope with the same ``webhook-id`` (receivers de-duplicate
    on it); 409 for one older than :data:`REPLAY_WINDOW`."""
    original = await get_delivery(session, organization_id, webhook_id, delivery_id)
    if utc.now() - original.created_at > REPLAY_WINDOW:
        raise Conflict(f"The delivery {delivery_id} is older than 30 days and can no longer be replayed.")
    now = utc.now()
    copy = WebhookDelivery(
        id=new_id("whd"),
        organization_id=original.organization_id,
        webhook_id=original.webhook_id,
        event_id=original.event_id,
        event_type=original.event_type,
        mailbox_id=original.mailbox_id,
        message_id=original.message_id,
        payload=original.payload,
        next_attempt_at=now,
        replayed_from_delivery_id=original.id,
        created_at=now,
    )
    session.add(copy)
    await _enqueue(session, copy)
    await session.commit()
    return copy


# ----------------------------------------------------------------------------- the job


def signature(webhook: Webhook, service_key: bytes, message_id: str, moment: datetime, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<sig>`` with the current secret, and with the
    previous one too while it is in its grace period (space-separated)."""
    keys = [secrets.unseal(webhook.secret, service_key)]
    if webhook.previous_secret and webhook.previous_secret_expires_at and webhook.previous_secret_expires_at > moment:
        keys.append(secrets.unseal(webhook.previous_secret, service_key))
    return " ".join(Signer(k).sign(message_id, moment, body) for k in keys)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def _client() -> httpx.AsyncClient:
    """One pooled client per event loop for every attempt (making a client builds an SSL
    context: milliseconds of CPU per attempt otherwise). No redirects are followed."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = httpx.AsyncClient(
            timeout=ATTEMPT_TIMEOUT,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
    return client


def sdk_headers(secret: str, moment: datetime, body: bytes) -> dict[str, str]:
    """The headers the official Shipmail SDK 0.6.7's ``verify_webhook`` checks (besides the
    Standard Webhooks ones): ``x-shipmail-timestamp`` (Unix seconds) and ``x-shipmail-signature``,
    the hex HMAC-SHA256 under the whole ``whsec_...`` string of ``"v1=<timestamp>\n<body>"``."""
    stamp = str(int(moment.timestamp()))
    signed = f"v1={stamp}\n".encode() + body
    return {
        "x-shipmail-timestamp": stamp,
        "x-shipmail-signature": hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest(),
    }


async def attempt(job: jobs.Job, svc: Services) -> None:
    """One HTTP attempt of the delivery named in ``job.payload`` (see the module docstring)."""
    delivery_id = str(job.payload.get("delivery_id"))
    async with svc.db.session() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status != "pending":
            return
        webhook = await session.get(Webhook, delivery.webhook_id)
        if webhook is None:
            return
        if not webhook.active:
            delivery.status, delivery.last_error, delivery.next_attempt_at = "failed", "the webhook is disabled", None
            session.add(delivery)
            await session.commit()
            return
    settings = svc.settings
    now = utc.now()
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "content-type": "application/json",
        "user-agent": "shipmail-webhooks/1",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature(webhook, settings.secret_key, delivery.message_id, now, body),
        **sdk_headers(secrets.unseal(webhook.secret, settings.secret_key), now, body),
    }
    status: int | None = None
    kept: str | None = None
    error: str | None = await resolved_problem(webhook.url, allow_private=settings.webhook_allow_private)
    started = time.monotonic()
    if error is None:
        try:
            async with _client().stream("POST", webhook.url, content=body, headers=headers) as response:
                status = response.status_code
                chunks = b""
                async for chunk in response.aiter_bytes():
                    chunks += chunk
                    if len(chunks) >= KEPT_RESPONSE_BYTES:
                        break
                kept = chunks[:KEPT_RESPONSE_BYTES].decode("utf-8", "replace")
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:1000] or type(exc).__name__
    else:
        error = f"URL refused: {error}"
    duration_ms = int((time.monotonic() - started) * 1000)
    ok = status is not None and 200 <= status < 300
    if status is not None and not ok:
        error = f"HTTP {status}"
    retry_after: float | None = None
    async with svc.db.session() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        webhook = await session.get(Webhook, delivery.webhook_id) if delivery else None
        if delivery is None or webhook is None:
            return
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                attempted_at=now,
                status_code=status,
                duration_ms=duration_ms,
                response_body=kept,
                error=error,
            )
        )
        delivery.attempts += 1
        delivery.last_status_code = status
        delivery.last_error = None if ok else error
        if ok:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", utc.now(), None
            webhook.failing_since = None
        else:
            webhook.failing_since = webhook.failing_since or now
            if now - webhook.failing_since >= GIVE_UP_AFTER:
                webhook.active, webhook.disabled_at = False, now
                logger.warning("webhook %s disabled: every attempt failed for 3 days", webhook.id)
            if now - delivery.created_at >= GIVE_UP_AFTER or not webhook.active:
                delivery.status, delivery.next_attempt_at = "failed", None
            else:
                retry_after = jobs.backoff(delivery.attempts, base=settings.webhook_retry_base, cap=MAX_RETRY_DELAY)
                delivery.next_attempt_at = now + timedelta(seconds=retry_after)
        session.add(delivery)
        session.add(webhook)
        await session.commit()
    if retry_after is not None:
        raise jobs.Retry(after=retry_after, reason=error or "failed")


handlers: dict[str, jobs.Handler] = {JOB_KIND: attempt}
