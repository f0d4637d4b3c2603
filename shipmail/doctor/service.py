"""Every difference between the database (the ``mailboxes`` table) and the mail server, and its repair.

:func:`check` lists the differences; :func:`repair` fixes them; ``shipmail doctor [--repair
[--purge-orphans]]`` prints both, one line per difference (:class:`Difference`, :class:`Action`).

The kinds (:class:`Kind`): what differs, and what ``--repair`` does about it.

- ``account-without-row``: an account no mailbox row owns; its address is blocked (a create
  answers 409) and LMTP still accepts mail for it. Removed when it holds no mail; one that holds
  mail is kept unless ``--purge-orphans``, which first saves every message under
  ``$SHIPMAIL_DATA_DIR/orphans/`` (:mod:`.orphans`) and removes it only if all were saved.
- ``row-without-account``: an ``active`` row whose account is gone (reads of it fail). The account
  is made again, empty (the mail went with the old one), with its system folders, its delivery
  script and, for a suspended mailbox, the delivery block.
- ``stuck-provisioning`` / ``stuck-deleting``: a create / delete that did not finish. The create is
  rolled back / the delete finished (:func:`shipmail.mailboxes.reconcile.resolve`).
- ``script-missing`` / ``script-differs``: no active delivery script, or one whose text is not
  :func:`shipmail.delivery.script.build_script` of the row. The script is built from the row and
  installed (:func:`shipmail.delivery.service.install`).
- ``folder-missing``: a system folder (drafts, sent, trash, junk, archive) is gone. It is made
  again with its role (:func:`restore_system_folders`) and the stored ids are refreshed.
- ``folder-id-stale``: ``mailboxes.folder_ids`` holds an id that the folder of that role no longer
  has. The stored ids are refreshed from the server.
- ``unchecked``: the account could not be inspected (the error is shown). Nothing: run again.

Why orphan accounts with mail are not removed by a plain ``--repair``: that mail belongs to no
tenant the database knows, but it may be the only copy of something (an account created by hand,
a tenant's mailbox whose row was lost); deleting it must be a decision, and then a copy is kept.

Order and races: the accounts are listed BEFORE the rows are read, so an account made by a create
running meanwhile always has its row in what is read (a create commits its row before it makes the
account); a row reported without an account is looked up once more before it is reported. Every
repair of a row claims it first (:func:`shipmail.mailboxes.reconcile.claim`) and skips it if it
changed meanwhile. ``--repair`` may run while the API serves: a create or delete it resolves
mid-flight answers an error and its retry succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from jmapc.methods import MailboxGet, MailboxSet
from sqlmodel import col, select

from shipmail.delivery import service as delivery
from shipmail.delivery.script import ScriptOptions, build_script
from shipmail.doctor import orphans
from shipmail.http.errors import ServiceUnavailable, ShipmailError
from shipmail.jmap import mailbox as jmap_mailbox
from shipmail.jmap.errors import from_jmap
from shipmail.jmap.request import Request
from shipmail.jmap.sieve_script import SieveScriptGet, sieve_capability
from shipmail.mailboxes import reconcile
from shipmail.mailboxes.accounts import SYSTEM_ROLES, count_messages, fetch_system_folders
from shipmail.mailboxes.models import Mailbox, MailboxState
from shipmail.mailserver.base import SPECIAL_USE_FOLDERS, AccountExists, AccountNotFound, MailServerError
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.doctor")

#: Accounts inspected at the same time (one JMAP request and one script download each).
CONCURRENCY = 8

#: Folder name of each system role the API creates (:data:`SPECIAL_USE_FOLDERS`).
FOLDER_NAMES: dict[str, str] = {role: name for name, role, _flag in SPECIAL_USE_FOLDERS}


class Kind(StrEnum):
    """What differs (see the module docstring's table)."""

    ACCOUNT_WITHOUT_ROW = "account-without-row"
    ROW_WITHOUT_ACCOUNT = "row-without-account"
    STUCK_PROVISIONING = "stuck-provisioning"
    STUCK_DELETING = "stuck-deleting"
    SCRIPT_MISSING = "script-missing"
    SCRIPT_DIFFERS = "script-differs"
    FOLDER_MISSING = "folder-missing"
    FOLDER_ID_STALE = "folder-id-stale"
    UNCHECKED = "unchecked"


@dataclass(frozen=True)
class Difference:
    """One difference: ``address`` (the account's or the row's), ``mailbox_id`` (None for an
    account without a row), ``detail`` for the operator; ``role`` for the folder kinds,
    ``messages`` (None when unknown) for an account without a row."""

    kind: Kind
    address: str
    mailbox_id: str | None = None
    detail: str = ""
    role: str | None = None
    messages: int | None = None

    def __str__(self) -> str:
        return f"{self.kind.value:<20} {self.address}  {self.mailbox_id or '-'}  {self.detail}"


@dataclass(frozen=True)
class Action:
    """What :func:`repair` did about one difference: ``result`` is ``repaired``, ``skipped``
    (left as it is on purpose; ``detail`` says why and what would do it) or ``failed``."""

    difference: Difference
    result: str
    detail: str

    def __str__(self) -> str:
        d = self.difference
        return f"{self.result:<8} {d.kind.value:<20} {d.address}  {d.mailbox_id or '-'}  {self.detail}"


@dataclass
class Report:
    """The result of :func:`check`: the differences, ordered by kind then address, and how many
    mailbox rows and mail server accounts were compared."""

    differences: list[Difference] = field(default_factory=list)
    mailboxes: int = 0
    accounts: int = 0

    def summary(self) -> str:
        n = len(self.differences)
        seen = f"{self.mailboxes} mailbox row(s), {self.accounts} account(s)"
        if not n:
            return f"no differences between the database and the mail server ({seen})"
        return f"{n} difference(s) between the database and the mail server ({seen})"


_ORDER = {kind: i for i, kind in enumerate(Kind)}


async def check(svc: Services) -> Report:
    """Compare every mailbox row with the mail server (see the module docstring). Errors: the mail
    server's or the database's when the accounts or the rows cannot be listed at all; an account
    that cannot be inspected is reported as ``unchecked``."""
    accounts = set(await svc.mail.list_accounts())  # before the rows: see "Order and races"
    async with svc.db.session() as session:
        rows = list((await session.exec(select(Mailbox).order_by(col(Mailbox.address)))).all())
    found: list[Difference] = []
    inspect: list[Mailbox] = []
    for row in rows:
        if row.state != MailboxState.ACTIVE:
            found.append(_intent(row, row.address in accounts))
        elif row.address in accounts or await svc.mail.exists(row.address):
            inspect.append(row)
        else:
            found.append(
                Difference(
                    Kind.ROW_WITHOUT_ACCOUNT, row.address, row.id, "the mailbox has no account on the mail server"
                )
            )
    gate = asyncio.Semaphore(CONCURRENCY)

    async def bounded(work: Awaitable[list[Difference]]) -> list[Difference]:
        async with gate:
            return await work

    owned = {row.address for row in rows}
    strays = sorted(accounts - owned)
    batches = await asyncio.gather(
        *(bounded(_inspect(svc, row)) for row in inspect), *(bounded(_stray(svc, address)) for address in strays)
    )
    for batch in batches:
        found.extend(batch)
    found.sort(key=lambda d: (_ORDER[d.kind], d.address, d.role or ""))
    return Report(found, mailboxes=len(rows), accounts=len(accounts))


def _intent(row: Mailbox, has_account: bool) -> Difference:
    account = "its account exists" if has_account else "no account"
    since = f"{row.updated_at:%Y-%m-%d %H:%M:%S} UTC"
    if row.state == MailboxState.PROVISIONING:
        return Difference(
            Kind.STUCK_PROVISIONING, row.address, row.id, f"a create that did not finish (since {since}; {account})"
        )
    return Difference(
        Kind.STUCK_DELETING, row.address, row.id, f"a delete that did not finish (since {since}; {account})"
    )


async def _stray(svc: Services, address: str) -> list[Difference]:
    try:
        messages: int | None = await count_messages(svc, address)
        held = f"it holds {messages} message(s)"
    except ShipmailError as exc:
        messages, held = None, f"its mail could not be counted ({exc.message})"
    return [
        Difference(Kind.ACCOUNT_WITHOUT_ROW, address, None, f"an account no mailbox owns; {held}", messages=messages)
    ]


async def _inspect(svc: Services, row: Mailbox) -> list[Difference]:
    """The folder and script differences of one active row that has an account."""
    try:
        return await _inspect_account(svc, row)
    except (ShipmailError, MailServerError) as exc:
        text = exc.message if isinstance(exc, ShipmailError) else str(exc)
        return [Difference(Kind.UNCHECKED, row.address, row.id, f"could not be inspected: {text}")]


async def _inspect_account(svc: Services, row: Mailbox) -> list[Difference]:
    session = await svc.jmap.session(row.address)
    urn = sieve_capability(svc.mail.sieve_capability, session.capabilities)
    request = Request(capabilities=(urn,))
    folders_call = request.add(MailboxGet(ids=None, properties=jmap_mailbox.ROLE_PROPERTIES))
    scripts_call = request.add(SieveScriptGet(ids=None, properties=["id", "name", "blobId", "isActive"]))
    results = await svc.jmap.call(row.address, request)
    roles = jmap_mailbox.roles(results.get(folders_call, what="folder listing")["list"], SYSTEM_ROLES)
    scripts = results.get(scripts_call, what="Sieve scripts")["list"]

    found = []
    for role in SYSTEM_ROLES:
        if role not in roles:
            found.append(
                Difference(
                    Kind.FOLDER_MISSING,
                    row.address,
                    row.id,
                    f"the {role} folder ({FOLDER_NAMES.get(role, role)}) is missing",
                    role=role,
                )
            )
    stored: dict[str, str] = json.loads(row.folder_ids) if row.folder_ids else {}
    for role, stored_id in sorted(stored.items()):
        if role in roles and roles[role] != stored_id:
            found.append(
                Difference(
                    Kind.FOLDER_ID_STALE,
                    row.address,
                    row.id,
                    f"the stored id of the {role} folder ({stored_id}) is no longer its id ({roles[role]})",
                    role=role,
                )
            )

    active = [s for s in scripts if s.get("isActive")]
    if not active:
        found.append(Difference(Kind.SCRIPT_MISSING, row.address, row.id, "no active delivery script"))
    else:
        text = await _script_text(svc, row.address, str(active[0]["blobId"]))
        if text != build_script(ScriptOptions.of(svc.mail.delivery_sieve(), row)):
            name = active[0].get("name")
            found.append(
                Difference(
                    Kind.SCRIPT_DIFFERS,
                    row.address,
                    row.id,
                    f"the active delivery script ({name}) differs from the stored settings",
                )
            )
    return found


async def _script_text(svc: Services, address: str, blob_id: str) -> str | None:
    """The text of the script blob ``blob_id`` (None when it is not UTF-8)."""
    response = await svc.jmap.open_blob(address, blob_id, content_type="application/sieve")
    try:
        if response.status_code != 200:
            raise ServiceUnavailable(f"The mail server answered {response.status_code} for the script download.")
        data = await response.aread()
    finally:
        await response.aclose()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --------------------------------------------------------------------------------------- repair


async def repair(
    svc: Services, differences: list[Difference], *, purge_orphans: bool, orphans_dir: Path
) -> list[Action]:
    """Repair each difference (see the module docstring's table), in this order: unfinished
    creates and deletes, accounts without rows, rows without accounts, folders (one repair per
    mailbox), scripts (one per mailbox). ``purge_orphans``: also remove accounts without rows that
    hold mail, after saving it under ``orphans_dir``. Each failure is reported, never raised;
    returns one :class:`Action` per difference."""
    actions: list[Action] = []
    done: dict[tuple[str, str], Action] = {}  # (repair, mailbox id): the action of a shared repair
    for d in sorted(differences, key=lambda d: (_REPAIR_ORDER[d.kind], d.address)):
        key = (_SHARED.get(d.kind, d.kind.value), d.mailbox_id or d.address)
        if key in done:
            first = done[key]
            actions.append(Action(d, first.result, f"{first.detail} (with the {first.difference.kind.value} repair)"))
            continue
        try:
            action = await _REPAIRS[d.kind](svc, d, purge_orphans, orphans_dir)
        except (ShipmailError, MailServerError, sa.exc.SQLAlchemyError, OSError, ValueError) as exc:
            text = exc.message if isinstance(exc, ShipmailError) else f"{type(exc).__name__}: {exc}"
            logger.warning("repair of %s %s failed: %s", d.kind.value, d.address, text)
            action = Action(d, "failed", text)
        done[key] = action
        actions.append(action)
    return actions


async def _resolve_intent(svc: Services, d: Difference, _purge: bool, _dir: Path) -> Action:
    assert d.mailbox_id is not None
    state = MailboxState.PROVISIONING if d.kind == Kind.STUCK_PROVISIONING else MailboxState.DELETING
    outcome = await reconcile.resolve(svc, d.mailbox_id, state)
    if outcome.action == "gone":
        return Action(d, "skipped", "already resolved meanwhile")
    detail = f"{outcome.action}{f' ({outcome.detail})' if outcome.detail else ''}"
    return Action(d, "repaired", detail)


async def _remove_stray(svc: Services, d: Difference, purge: bool, orphans_dir: Path) -> Action:
    address = d.address
    if await _row_exists(svc, address):
        return Action(d, "skipped", "a mailbox row for the address exists now; run doctor again")
    if not await svc.mail.exists(address):
        return Action(d, "repaired", "the account is already gone")
    messages = await count_messages(svc, address)
    saved = ""
    if messages:
        if not purge:
            return Action(
                d,
                "skipped",
                f"it holds {messages} message(s): kept; `shipmail doctor --repair --purge-orphans` saves them "
                f"under {orphans_dir} and removes the account",
            )
        target, written = await orphans.save_mail(svc, address, orphans_dir)
        if written != messages or await count_messages(svc, address) != written:
            return Action(d, "failed", f"saved {written} of its message(s) in {target} but mail changed; run again")
        saved = f"; its {written} message(s) are saved in {target}"
    with contextlib.suppress(AccountNotFound):
        await svc.mail.deprovision(address)
    svc.jmap.forget(address)
    if await _row_exists(svc, address):
        logger.warning("a mailbox for %s was created while its stray account was removed", address)
        return Action(d, "failed", "a mailbox for the address was created meanwhile; run doctor again")
    return Action(d, "repaired", f"account removed{saved or ' (it held no mail)'}")


async def _row_exists(svc: Services, address: str) -> bool:
    async with svc.db.session() as session:
        return (await session.exec(select(Mailbox.id).where(col(Mailbox.address) == address))).first() is not None


async def _with_claimed_row(svc: Services, d: Difference, work: Callable[[Mailbox], Awaitable[str]]) -> Action:
    """Run ``work(row)`` on the difference's row claimed in a transaction of its own (skipped
    when the row is gone or no longer ``active``), then commit what it changed on the row."""
    assert d.mailbox_id is not None
    async with svc.db.session() as session:
        if not await reconcile.claim(session, d.mailbox_id, MailboxState.ACTIVE):
            await session.rollback()
            return Action(d, "skipped", "the mailbox is gone or changed meanwhile")
        row = await session.get(Mailbox, d.mailbox_id)
        assert row is not None
        detail = await work(row)
        session.add(row)
        await session.commit()
    return Action(d, "repaired", detail)


async def _recreate_account(svc: Services, d: Difference, _purge: bool, _dir: Path) -> Action:
    async def work(row: Mailbox) -> str:
        with contextlib.suppress(AccountExists):
            await svc.mail.provision(row.address)
        svc.jmap.forget(row.address)
        row.folder_ids = json.dumps(await fetch_system_folders(svc, row.address))
        await delivery.install(svc, row)
        restored = "system folders and delivery script"
        if row.suspended_at is not None:
            await svc.mail.set_suspended(row.address, True)
            restored = "system folders, delivery script and suspension"
        elif row.storage_quota_bytes is not None:
            await svc.mail.set_storage_quota(row.address, row.storage_quota_bytes)
            restored = "system folders, delivery script and storage quota"
        return f"account made again, empty (its old mail is gone), with its {restored}"

    return await _with_claimed_row(svc, d, work)


async def _restore_folders(svc: Services, d: Difference, _purge: bool, _dir: Path) -> Action:
    async def work(row: Mailbox) -> str:
        made = await restore_system_folders(svc, row.address)
        row.folder_ids = json.dumps(await fetch_system_folders(svc, row.address))
        return (f"made {', '.join(made)} again; " if made else "") + "stored folder ids refreshed"

    return await _with_claimed_row(svc, d, work)


async def _reinstall_script(svc: Services, d: Difference, _purge: bool, _dir: Path) -> Action:
    async def work(row: Mailbox) -> str:
        await delivery.install(svc, row)
        return "delivery script rebuilt from the stored settings and installed"

    return await _with_claimed_row(svc, d, work)


async def _nothing(_svc: Services, d: Difference, _purge: bool, _dir: Path) -> Action:
    return Action(d, "skipped", "not inspected, so nothing to repair; run doctor again")


async def restore_system_folders(svc: Services, address: str) -> list[str]:
    """Give ``address``'s account every system folder it lacks (RFC 8621 section 2.5,
    ``Mailbox/set``; ONE request each for reading and writing): a top-level folder with the
    role's name (:data:`FOLDER_NAMES`) but no role gets the role, otherwise a folder is created
    with the name and the role. Returns the roles made, in :data:`SYSTEM_ROLES` order. Errors:
    the server's refusal mapped (:func:`shipmail.jmap.errors.from_jmap`), 503 unavailable."""
    request = Request()
    listing = request.add(MailboxGet(ids=None, properties=jmap_mailbox.TREE_PROPERTIES))
    folders = (await svc.jmap.call(address, request)).get(listing, what="folder listing")["list"]
    have = {f.get("role") for f in folders}
    unnamed = {str(f["name"]): str(f["id"]) for f in folders if not f.get("role") and not f.get("parentId")}
    missing = [role for role in SYSTEM_ROLES if role not in have and role in FOLDER_NAMES]
    if not missing:
        return []
    create: dict[str, Any] = {}
    update: dict[str, Any] = {}
    for role in missing:
        name = FOLDER_NAMES[role]
        if name in unnamed:
            update[unnamed[name]] = {"role": role}
        else:
            create[role] = {"name": name, "role": role, "parentId": None}
    write = Request()
    written = write.add(MailboxSet(create=create or None, update=update or None))
    result = (await svc.jmap.call(address, write)).get(written, what="folder repair")
    for problem in list((result.get("notCreated") or {}).values()) + list((result.get("notUpdated") or {}).values()):
        raise from_jmap(problem, what="system folder")
    return missing


_REPAIR_ORDER = {
    Kind.STUCK_PROVISIONING: 0,
    Kind.STUCK_DELETING: 0,
    Kind.ACCOUNT_WITHOUT_ROW: 1,
    Kind.ROW_WITHOUT_ACCOUNT: 2,
    Kind.FOLDER_MISSING: 3,
    Kind.FOLDER_ID_STALE: 3,
    Kind.SCRIPT_MISSING: 4,
    Kind.SCRIPT_DIFFERS: 4,
    Kind.UNCHECKED: 5,
}
#: Kinds repaired by one repair per mailbox.
_SHARED = {
    Kind.FOLDER_MISSING: "folders",
    Kind.FOLDER_ID_STALE: "folders",
    Kind.SCRIPT_MISSING: "script",
    Kind.SCRIPT_DIFFERS: "script",
}
_REPAIRS: dict[Kind, Callable[[Services, Difference, bool, Path], Awaitable[Action]]] = {
    Kind.STUCK_PROVISIONING: _resolve_intent,
    Kind.STUCK_DELETING: _resolve_intent,
    Kind.ACCOUNT_WITHOUT_ROW: _remove_stray,
    Kind.ROW_WITHOUT_ACCOUNT: _recreate_account,
    Kind.FOLDER_MISSING: _restore_folders,
    Kind.FOLDER_ID_STALE: _restore_folders,
    Kind.SCRIPT_MISSING: _reinstall_script,
    Kind.SCRIPT_DIFFERS: _reinstall_script,
    Kind.UNCHECKED: _nothing,
}
