"""Install a mailbox's delivery script on the mail server over JMAP (RFC 9661 / Cyrus), and change
the settings it is made of together with it.

Source: the script from :func:`shipmail.delivery.script.build_script` for the row's settings; the
server's Sieve capability from the JMAP session (``urn:ietf:params:jmap:sieve`` per RFC 9661, or
Cyrus 3.6's ``https://cyrusimap.org/ns/jmap/sieve``: :func:`shipmail.jmap.sieve_script.sieve_capability`),
else ``svc.mail.sieve_capability``.

:func:`install` costs two JMAP HTTP requests:

1. upload the script as a blob (RFC 8620 section 6.1, ``application/sieve``);
2. one API request with three calls: ``SieveScript/get`` (the scripts present), ``SieveScript/set``
   creating a script under a fresh name with ``onSuccessActivateScript`` (the server activates it
   only once it has accepted it), and ``SieveScript/set`` destroying the scripts listed in the
   first call (back-reference).

Replacement is atomic from the server's point of view: a script the server rejects is never
created, so the previously active script stays active (destroying an active script fails with
``scriptIsActive``, which is ignored). Only the new script survives a successful install; leftovers
of a failed one are removed by the next install.
"""

from __future__ import annotations

import logging
import secrets
import time

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.db.engine import begin_write
from shipmail.delivery.script import ScriptOptions, build_script
from shipmail.jmap.errors import from_jmap
from shipmail.jmap.request import Request
from shipmail.jmap.sieve_script import PROPERTIES, SieveScriptGet, SieveScriptSet, sieve_capability
from shipmail.mailboxes.models import Mailbox
from shipmail.rules.schemas import MailboxRule
from shipmail.runtime import Services
from shipmail.settings.schemas import AutoReply

logger = logging.getLogger("shipmail.delivery.service")

#: Names of the scripts this service creates: ``shipmail-<unix ms>-<random>``.
SCRIPT_PREFIX = "shipmail-"


def new_script_name() -> str:
    return f"{SCRIPT_PREFIX}{int(time.time() * 1000)}-{secrets.token_hex(3)}"


async def update_and_install(
    svc: Services,
    session: AsyncSession,
    row: Mailbox,
    *,
    rules: list[MailboxRule] | None = None,
    auto_reply: AutoReply | None = None,
    spam_filter_threshold: int | None = None,
    forward_to: list[str] | None = None,
) -> None:
    """Change ``row``'s delivery settings (the ones given, already checked) and its active script
    together, and commit ``session``.

    ``row`` was read and locked in ``session`` by the caller, inside this write transaction
    (:func:`shipmail.mailboxes.service.get` with ``for_update=True``: SQLite ``BEGIN IMMEDIATE``,
    PostgreSQL ``FOR UPDATE``), so the script is built from the row as committed and no other
    change of it can be installed in between. The row is changed and flushed, its new script
    installed, then the transaction committed:
    - the server refuses the script -> the error propagates and the caller's session rolls back;
      the old script stays active;
    - the commit fails after the install -> the script of the previous settings is reinstalled.
    Errors: :func:`install`'s, the commit's.
    """
    previous = ScriptOptions.of(svc.mail.delivery_sieve(), row)
    if rules is not None:
        row.rules = rules
    if auto_reply is not None:
        row.auto_reply = auto_reply
    if spam_filter_threshold is not None:
        row.spam_filter_threshold = spam_filter_threshold
    if forward_to is not None:
        row.forward_to = forward_to
    row.updated_at = utc.now()
    session.add(row)
    await session.flush()
    await install(svc, row)
    try:
        await session.commit()
    except BaseException:
        logger.warning("settings of %s not saved after the script changed; restoring the script", row.id)
        try:
            await activate(svc, row, build_script(previous))
        except Exception:
            logger.exception("could not restore the previous script of %s", row.id)
        raise


async def install(svc: Services, row: Mailbox) -> None:
    """Build ``row``'s delivery script and make it the account's only, active script.

    Errors: 503 ServiceUnavailable (mail server unreachable, timeout), the mapped JMAP error when
    the server refuses the script (``invalidScript``/``invalidSieve`` -> 422, ``overQuota`` -> 403,
    others 500). On any error the previously active script stays active.
    """
    await activate(svc, row, build_script(ScriptOptions.of(svc.mail.delivery_sieve(), row)))


async def activate(svc: Services, row: Mailbox, script: str) -> None:
    """Upload ``script`` for ``row``'s account and make it the only, active script (see the module
    docstring; errors as :func:`install`)."""
    address = row.address
    session = await svc.jmap.session(address)
    urn = sieve_capability(svc.mail.sieve_capability, session.capabilities)
    blob_id = await svc.jmap.upload(address, script.encode("utf-8"), "application/sieve")
    request = Request(capabilities=(urn,))
    listed = request.add(SieveScriptGet(ids=None, properties=PROPERTIES))
    create = request.add(
        SieveScriptSet(
            create={"script": {"name": new_script_name(), "blobId": blob_id}}, on_success_activate_script="#script"
        )
    )
    destroy = request.add(SieveScriptSet(destroy=request.ref(listed, "/list/*/id")))
    results = await svc.jmap.call(address, request)
    created = results.get(create, what="Sieve script")
    not_created = (created.get("notCreated") or {}).get("script")
    if not_created is not None:
        logger.warning("the mail server refused the delivery script of %s: %s", row.id, not_created.get("type"))
        raise from_jmap(not_created, what="Sieve script")
    made = (created.get("created") or {}).get("script") or {}
    if made.get("isActive") is False:
        logger.warning("the delivery script of %s was created but not activated", row.id)
    try:
        cleanup = results.get(destroy, what="Sieve script clean-up")
    except Exception as exc:  # the new script is active: a failed clean-up is only untidy
        logger.warning("could not remove old Sieve scripts of %s: %s", row.id, exc)
        return
    for script_id, err in (cleanup.get("notDestroyed") or {}).items():
        logger.info("old Sieve script %s of %s kept: %s", script_id, row.id, (err or {}).get("type"))


async def reinstall_all(svc: Services) -> tuple[int, list[str]]:
    """Rebuild and reinstall every mailbox's script from the database (after an upgrade changed
    what scripts contain; outside any request: its own sessions). Each row is read and locked in
    a write transaction of its own while its script is installed (a settings change through the
    API meanwhile waits, so the last script installed is the one of the committed row), and one
    that cannot be read or installed fails alone. Returns (scripts installed, ids of the
    mailboxes that failed)."""
    async with svc.db.session() as session:
        mailbox_ids = list((await session.exec(select(col(Mailbox.id)).order_by(col(Mailbox.id)))).all())
    installed, failed = 0, []
    for mailbox_id in mailbox_ids:
        try:
            async with svc.db.session() as session:
                await begin_write(session)
                row = await session.get(Mailbox, mailbox_id, with_for_update=True, populate_existing=True)
                if row is None:  # deleted meanwhile
                    continue
                await install(svc, row)
                await session.commit()
            installed += 1
        except Exception as exc:
            logger.warning("could not reinstall the script of %s: %s", mailbox_id, exc)
            failed.append(mailbox_id)
    return installed, failed
