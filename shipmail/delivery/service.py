"""Install a mailbox's delivery script on the mail server over JMAP (RFC 9661 / Cyrus).

Source: the script from :func:`shipmail.sieve.compiler.build_script`; the server's Sieve
capability from the JMAP session (``urn:ietf:params:jmap:sieve`` per RFC 9661, or Cyrus 3.6's
``https://cyrusimap.org/ns/jmap/sieve``), else ``svc.mail.sieve_capability``.

:func:`install` costs two JMAP HTTP requests:

1. upload the script as a blob (RFC 8620 section 6.1, ``application/sieve``);
2. one API request with three calls: ``SieveScript/get`` (the scripts present), ``SieveScript/set``
   creating a script under a fresh name with ``onSuccessActivateScript`` (the server activates it
   only once it has accepted it), and ``SieveScript/set`` destroying the scripts listed in step 1
   (back-reference).

Replacement is atomic from the server's point of view: a script the server rejects is never
created, so the previously active script stays active (destroying an active script fails with
``scriptIsActive``, which is ignored). Only the new script survives a successful install; leftovers
of a failed one are removed by the next install.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from collections.abc import Awaitable, Callable

from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.mailboxes.models import Mailbox
from shipmail import utc
from shipmail.jmap.client import URN_CORE
from shipmail.jmap.legacy import RawCall, call_ids  # TEMPORARY
from shipmail.jmap.errors import from_jmap
from shipmail.runtime import Services
from shipmail.sieve.compiler import ScriptOptions, build_script
from shipmail.sieve.model import DeliveryPlan

logger = logging.getLogger("shipmail.delivery.service")

URN_SIEVE_RFC = "urn:ietf:params:jmap:sieve"
URN_SIEVE_CYRUS = "https://cyrusimap.org/ns/jmap/sieve"

#: Names of the scripts this service creates: ``shipmail-<unix ms>-<random>``.
SCRIPT_PREFIX = "shipmail-"


def options_for(svc: Services, row: Mailbox) -> ScriptOptions:
    """What goes into ``row``'s script: the mail server's part, then the spam threshold, the
    auto-reply and the inbox rules stored on the row (the database is the source of truth)."""
    from shipmail.settings.service import plan_auto_reply, plan_spam
    from shipmail.rules.service import plan_rules

    plan = DeliveryPlan(spam=plan_spam(row), auto_reply=plan_auto_reply(row), rules=plan_rules(row))
    return ScriptOptions(server=svc.mail.delivery_sieve(), plan=plan)


async def update_and_install(
    svc: Services,
    organization_id: str,
    mailbox_id: str,
    mutate: Callable[[AsyncSession, Mailbox], Awaitable[None]],
) -> Mailbox:
    """Change a mailbox's stored delivery settings and its active script together.

    ``mutate(session, row)`` validates and changes the row (raising a 4xx before anything is
    written). The row is locked (``SELECT ... FOR UPDATE`` where the database has it; SQLite
    serialises writers), flushed, its new script installed, then committed:
    - the server refuses the script -> the transaction rolls back; the old script stays active;
    - the commit fails after the install -> the script of the previous settings is reinstalled.
    Errors: 404 for another organisation's mailbox, what ``mutate`` raises, :func:`install`'s.
    """
    from shipmail.mailboxes import service as mailboxes

    async with svc.db.session() as session:
        row = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
        previous = Mailbox.model_validate(row.model_dump())
        await mutate(session, row)
        row.updated_at = utc.now()
        session.add(row)
        await session.flush()
        await install(svc, row)
        try:
            await session.commit()
        except BaseException:
            logger.warning("settings of %s not saved after the script changed; restoring the script", row.id)
            try:
                await install(svc, previous)
            except Exception:
                logger.exception("could not restore the previous script of %s", row.id)
            raise
        return row


def sieve_capability(svc: Services, session_capabilities: dict[str, Any]) -> str:
    """The Sieve capability URN to use: the mail server's own if the session offers it, else the
    RFC 9661 or Cyrus URN the session offers, else the mail server's declared one."""
    for urn in (svc.mail.sieve_capability, URN_SIEVE_RFC, URN_SIEVE_CYRUS):
        if urn in session_capabilities:
            return urn
    return svc.mail.sieve_capability


def new_script_name() -> str:
    return f"{SCRIPT_PREFIX}{int(time.time() * 1000)}-{secrets.token_hex(3)}"


async def install(svc: Services, row: Mailbox) -> None:
    """Build ``row``'s delivery script and make it the account's only, active script.

    Errors: 503 ServiceUnavailable (mail server unreachable, timeout), the mapped JMAP error when
    the server refuses the script (``invalidScript``/``invalidSieve`` -> 422, ``overQuota`` -> 403,
    others 500). On any error the previously active script stays active.
    """
    script = build_script(options_for(svc, row))
    address = row.address
    session = await svc.jmap.session(address)
    urn = sieve_capability(svc, session.capabilities)
    blob_id = await svc.jmap.upload(address, script.encode("utf-8"), "application/sieve")
    using = (URN_CORE, urn)
    get = RawCall("SieveScript/get", {"ids": None, "properties": ["id", "name", "isActive"]}, using=using)
    create = RawCall("SieveScript/set", {
        "create": {"script": {"name": new_script_name(), "blobId": blob_id}},
        "onSuccessActivateScript": "#script",
    }, using=using)
    cids = call_ids([get, create, create])
    destroy = RawCall("SieveScript/set", {
        "#destroy": {"resultOf": cids[0], "name": "SieveScript/get", "path": "/list/*/id"},
    }, using=using)
    results = await svc.jmap.call(address, [get, create, destroy])
    created = results.raw(cids[1], what="Sieve script")
    not_created = (created.get("notCreated") or {}).get("script")
    if not_created is not None:
        logger.warning("the mail server refused the delivery script of %s: %s", row.id, not_created.get("type"))
        raise from_jmap(not_created, what="Sieve script")
    made = (created.get("created") or {}).get("script") or {}
    if made.get("isActive") is False:
        logger.warning("the delivery script of %s was created but not activated", row.id)
    try:
        cleanup = results.raw(cids[2], what="Sieve script clean-up")
    except Exception as exc:  # the new script is active: a failed clean-up is only untidy
        logger.warning("could not remove old Sieve scripts of %s: %s", row.id, exc)
        return
    for script_id, err in (cleanup.get("notDestroyed") or {}).items():
        logger.info("old Sieve script %s of %s kept: %s", script_id, row.id, (err or {}).get("type"))


async def reinstall_all(svc: Services) -> tuple[int, list[str]]:
    """Rebuild and reinstall every mailbox's script from the database (after an upgrade changed
    what scripts contain). Returns (scripts installed, ids of the mailboxes that failed)."""
    from sqlmodel import select

    async with svc.db.session() as session:
        rows = list((await session.exec(select(Mailbox))).all())
    installed, failed = 0, []
    for row in rows:
        try:
            await install(svc, row)
            installed += 1
        except Exception as exc:
            logger.warning("could not reinstall the script of %s: %s", row.id, exc)
            failed.append(row.id)
    return installed, failed
