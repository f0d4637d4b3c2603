"""Inbox rules: ``GET/PUT /v1/mailboxes/{id}/rules`` (Shipmail ``getMailboxRules``,
``updateMailboxRules``), compiled into the mailbox's delivery Sieve script.

The rules are :class:`~shipmail.rules.schemas.MailboxRule` models from the request to the column
(``mailboxes.rules``, the source of truth) to the compiler (:mod:`shipmail.rules.sieve`). A custom
``move`` target is stored with its ``fallback_name`` (:func:`resolve_targets`), which the API never
shows.

Costs: GET is one database read and ONE JMAP request (Mailbox/get, for the folders a rule may
target). PUT, in the request's write transaction, begun before the row is read: the row read
once and locked (:func:`shipmail.mailboxes.service.get` with ``for_update``: SQLite
``BEGIN IMMEDIATE``, PostgreSQL ``FOR UPDATE``; concurrent changes of the mailbox's script wait
for each other, in every process), one Mailbox/get (checks the custom targets), then
:func:`shipmail.delivery.service.update_and_install` (the row is changed, the new script uploaded
and activated, then committed: a script the server refuses leaves the old script active and the
row unchanged): three JMAP requests in all.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.delivery import service as delivery
from shipmail.folders import service as folder_service
from shipmail.folders.schemas import Folder
from shipmail.http.errors import Detail, ValidationFailed, detail
from shipmail.jmap import ids
from shipmail.mailboxes import service as mailboxes
from shipmail.rules.schemas import (
    TARGET_ROLES,
    MailboxRule,
    MailboxRuleCustomTarget,
    MailboxRuleFolder,
    MailboxRuleMoveAction,
    MailboxRules,
)
from shipmail.runtime import Services


def _targetable(folder: Folder) -> bool:
    return folder.role in TARGET_ROLES or folder.kind == "custom"


def rule_folders(folders: Iterable[Folder]) -> list[MailboxRuleFolder]:
    """The folders a rule may move to, in folder-tree order: Inbox, Archive, Junk, Trash and every
    custom folder (Drafts and Sent are not targets)."""
    return [
        MailboxRuleFolder(
            id=ids.to_wire(ids.FOLDER, f.id),
            name=f.name,
            parent_id=ids.to_wire(ids.FOLDER, f.parent_id) if f.parent_id else None,
            role=f.role,
            kind="custom" if f.kind == "custom" else "system",
        )
        for f in folder_service.tree_order(folders)
        if _targetable(f)
    ]


def resolve_targets(rules: list[MailboxRule], folders: list[Folder]) -> list[MailboxRule]:
    """``rules`` as stored: each custom target's ``folder_id`` checked against ``folders`` (422
    ``rules[i].actions[j].target.folder_id`` for an unknown folder, or a system one) and given its
    ``fallback_name`` (the folder's path). ``rules`` are left as they are."""
    by_id = {f.id: f for f in folders}
    head = ids.FOLDER + "_"
    problems: list[Detail] = []
    stored: list[MailboxRule] = []
    for i, rule in enumerate(rules):
        actions = list(rule.actions)
        for j, action in enumerate(actions):
            if not isinstance(action, MailboxRuleMoveAction) or not isinstance(action.target, MailboxRuleCustomTarget):
                continue
            field = f"rules[{i}].actions[{j}].target.folder_id"
            wire = action.target.folder_id
            folder = by_id.get(wire[len(head) :]) if wire.startswith(head) else None
            if folder is None:
                problems.append(detail(field, "not_found", f"No folder with id {wire!r} in this mailbox."))
            elif folder.kind != "custom":
                hint = (
                    f'use {{"kind": "system", "role": "{folder.role}"}}'
                    if folder.role in TARGET_ROLES
                    else "rules cannot move messages there"
                )
                problems.append(detail(field, "system_folder", f"{folder.name!r} is a system folder: {hint}."))
            else:
                path = "/".join(folder_service.path_of(by_id, folder.id))
                target = action.target.model_copy(update={"fallback_name": path})
                actions[j] = action.model_copy(update={"target": target})
        stored.append(rule.model_copy(update={"actions": actions}))
    if problems:
        raise ValidationFailed("Invalid rules.", details=problems)
    return stored


async def get_rules(svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str) -> MailboxRules:
    """The mailbox's rules (as saved) and target folders (404 for an unknown mailbox or another
    organisation's). One database read, one JMAP request."""
    row = await mailboxes.get(session, organization_id, mailbox_id, with_rules=True)
    folders = await folder_service.list_folders(svc, row)
    return MailboxRules(mailbox_id=row.id, address=row.address, rules=row.rules, folders=rule_folders(folders))


async def replace_rules(
    svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, rules: list[MailboxRule]
) -> MailboxRules:
    """Replace every rule of the mailbox with ``rules`` (checked by
    :class:`~shipmail.rules.schemas.UpdateMailboxRulesRequest`) and activate the script compiled
    from them, in ``session``'s transaction: both or neither (see the module docstring).
    422: :func:`resolve_targets`, a script the server refuses; 404: unknown mailbox."""
    row = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    folders = await folder_service.list_folders(svc, row)
    stored = resolve_targets(rules, folders)
    await delivery.update_and_install(svc, session, row, rules=stored)
    return MailboxRules(mailbox_id=row.id, address=row.address, rules=stored, folders=rule_folders(folders))
