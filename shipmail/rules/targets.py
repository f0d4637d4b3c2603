"""Which inbox rules move mail to a folder: the check a folder delete makes first.

Apart from :mod:`shipmail.rules.service` (which imports :mod:`shipmail.folders.service`), so the
folders feature can import it at module level without an import cycle;
``shipmail.rules.service.ensure_not_targeted`` is this same function.
"""

from __future__ import annotations

from collections.abc import Collection

from shipmail.http.errors import Conflict
from shipmail.jmap import ids
from shipmail.mailboxes.models import Mailbox
from shipmail.rules.schemas import MailboxRule, MailboxRuleCustomTarget, MailboxRuleMoveAction


def targeting(row: Mailbox, folder_ids: Collection[str]) -> list[MailboxRule]:
    """The stored rules of ``row`` (enabled or not) that move messages to one of ``folder_ids``
    (JMAP ids)."""
    wanted = {ids.to_wire(ids.FOLDER, f) for f in folder_ids}
    return [
        rule for rule in row.rules
        if any(isinstance(a, MailboxRuleMoveAction) and isinstance(a.target, MailboxRuleCustomTarget)
               and a.target.folder_id in wanted for a in rule.actions)
    ]


def ensure_not_targeted(row: Mailbox, folder_ids: Collection[str]) -> None:
    """409 when a rule of ``row`` moves messages to one of ``folder_ids`` (JMAP ids): the folder
    (or a subfolder) cannot be deleted until the rule is changed."""
    rules = targeting(row, folder_ids)
    if rules:
        first = rules[0]
        more = f" (and {len(rules) - 1} more)" if len(rules) > 1 else ""
        raise Conflict(f"The rule {first.name!r} (id {first.id}){more} moves messages to this folder "
                       "or one of its subfolders: change or delete the rule first.")
