"""JMAP Mailbox (RFC 8621 section 2): the property lists the gateway asks for and small raw decoders.

The methods are jmapc's, used as they are: ``MailboxGet`` (section 2.1) and ``MailboxSet``
(section 2.5). ``create`` and ``update`` values are raw dicts: jmapc's ``Mailbox`` model would add
``sortOrder: 0`` and ``isSubscribed: false`` to a create (Cyrus gives custom folders 10) and leaves
out every ``None`` field, while a patch needs ``"parentId": null`` to move a folder to the top level
(jmapc keeps ``None`` inside raw dicts). jmapc's ``MailboxSet`` always sends
``onDestroyRemoveEmails`` (false unless set), which a create or an update ignores.

Responses are read as the raw argument dicts the server sent (:meth:`shipmail.jmap.request.Results.get`):
decoding through jmapc's dataclasses_json response models costs more CPU than the HTTP round trip
(measured, see :mod:`shipmail.jmap.request`), and the gateway maps the JSON to its own types anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Properties of a folder listing (everything the API shows of a folder).
PROPERTIES: list[str] = [
    "id",
    "name",
    "parentId",
    "role",
    "sortOrder",
    "totalEmails",
    "unreadEmails",
    "unreadThreads",
]

#: Properties needed to walk the folder tree (checks before a write): no counts, cheaper on Cyrus.
TREE_PROPERTIES: list[str] = ["id", "name", "parentId", "role"]

#: Properties needed to find the system folders by role.
ROLE_PROPERTIES: list[str] = ["id", "role"]


def roles(listed: Iterable[Mapping[str, Any]], wanted: Iterable[str]) -> dict[str, str]:
    """``{role: Mailbox id}`` of the ``wanted`` roles found among the raw Mailbox objects
    ``listed`` (a ``Mailbox/get`` ``list``); a role without a mailbox is left out."""
    keep = set(wanted)
    return {str(m["role"]): str(m["id"]) for m in listed if m.get("role") in keep}
