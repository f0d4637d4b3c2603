"""A mailbox's sending identities: JMAP Identity objects (RFC 8621 section 6).

Source: Shipmail ``GET /v1/mailboxes/{id}/identities``. ONE JMAP request (``Identity/get``).

Cyrus 3.6's Identity/get is a stub: one identity whose id is the address itself and whose name is
empty (Identity/set does not exist). So the name shown is the mailbox's display name (falling back
to the server's name, then ""). The raw response is read as dicts: jmapc's Identity decoding
requires properties Cyrus leaves out.

Public ids are ``idn_`` + the unpadded URL-safe base64 of the JMAP id (Cyrus's ids contain ``@``
and ``.``, outside the JMAP id alphabet), so :func:`identity_jmap_id` can turn one back.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from jmapc.methods import IdentityGet

from shipmail.mailboxes.models import Mailbox
from shipmail.http.errors import NotFound
from shipmail.runtime import Services

PREFIX = "idn"
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]{2,400}$")


@dataclass(frozen=True)
class Identity:
    """One sending identity: public id, display name, email address."""

    id: str
    name: str
    email: str


def identity_wire_id(jmap_id: str) -> str:
    """``idn_`` + unpadded base64url of ``jmap_id``."""
    return f"{PREFIX}_" + base64.urlsafe_b64encode(jmap_id.encode()).decode().rstrip("=")


def identity_jmap_id(wire_id: str) -> str:
    """The JMAP id inside ``wire_id``; 404 ``not_found`` when it is not an identity id."""
    head = f"{PREFIX}_"
    body = wire_id[len(head):] if wire_id.startswith(head) else ""
    try:
        if not _BASE64URL.match(body):
            raise ValueError
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise NotFound(f"No identity with id {wire_id!r}.") from None


def of(row: Mailbox, ident: dict[str, Any]) -> Identity:
    """The API's identity for a raw Identity/get object of ``row``'s account."""
    name = row.display_name if row.display_name else str(ident.get("name") or "")
    return Identity(
        id=identity_wire_id(str(ident["id"])),
        name=name,
        email=str(ident.get("email") or row.address),
    )


async def list_identities(svc: Services, row: Mailbox) -> list[Identity]:
    """The identities of ``row``'s account (ONE JMAP request: Identity/get, RFC 8621 section 6.1)."""
    results = await svc.jmap.call(row.address, [IdentityGet(ids=None)])
    listed = results.raw("single.Identity/get", what="identity listing").get("list") or []
    return [of(row, ident) for ident in listed]
