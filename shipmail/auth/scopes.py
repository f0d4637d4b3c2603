"""Scopes as in Shipmail's reference spec (``x-scope``): ``<resource>:read|write``.

Rules: ``*`` grants everything; ``X:write`` implies ``X:read``; anything else must match exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Scope(StrEnum):
    """Every scope a key can hold."""

    ALL = "*"
    DOMAINS_READ = "domains:read"
    DOMAINS_WRITE = "domains:write"
    MAILBOXES_READ = "mailboxes:read"
    MAILBOXES_WRITE = "mailboxes:write"
    #: Create and read mailbox exports (a copy of all the mail; not implied by mailboxes:write).
    MAILBOXES_EXPORT = "mailboxes:export"
    MESSAGES_READ = "messages:read"
    MESSAGES_WRITE = "messages:write"
    MESSAGES_SEND = "messages:send"
    #: Reply drafts (``createMailboxInboxReplyDraft``); sending one needs messages:send.
    DRAFTS_READ = "drafts:read"
    DRAFTS_WRITE = "drafts:write"
    MAILBOX_RULES_READ = "mailbox_rules:read"
    MAILBOX_RULES_WRITE = "mailbox_rules:write"
    MAILBOX_CREDENTIALS_READ = "mailbox_credentials:read"
    MAILBOX_CREDENTIALS_WRITE = "mailbox_credentials:write"
    MAILBOX_FORWARDING_READ = "mailbox_forwarding:read"
    MAILBOX_FORWARDING_WRITE = "mailbox_forwarding:write"
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Validate scope strings; raises ``ValueError`` naming the first unknown one."""
    result: list[Scope] = []
    for value in values:
        for part in value.replace(",", " ").split():
            try:
                scope = Scope(part)
            except ValueError:
                raise ValueError(f"unknown scope {part!r}; known: {', '.join(s.value for s in Scope)}") from None
            if scope not in result:
                result.append(scope)
    return result


def granted(held: Iterable[str]) -> frozenset[str]:
    """Every scope the ``held`` ones grant: themselves, every scope for ``*``, ``X:read`` for each
    ``X:write``. Unknown strings grant only themselves (and so nothing a route requires)."""
    held_set = set(held)
    if Scope.ALL in held_set:
        return frozenset(s.value for s in Scope) | held_set
    implied = {f"{value[: -len(':write')]}:read" for value in held_set if value.endswith(":write")}
    return frozenset(held_set | implied)


def grants(held: Iterable[str], required: Scope) -> bool:
    """Whether the ``held`` scopes grant ``required``."""
    return required.value in granted(held)
