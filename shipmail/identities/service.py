"""A mailbox's sending identities: JMAP Identity objects (RFC 8621 section 6).

Source: Shipmail ``GET /v1/mailboxes/{id}/identities``. ONE JMAP request (``Identity/get``).

Cyrus 3.6's Identity/get is a stub: one identity whose id is the address itself and whose name is
empty (Identity/set does not exist). So the name shown is the mailbox's display name (falling back
to the server's name, then ""). The response is read as raw dicts (:mod:`shipmail.jmap.identity`
says why: jmapc's Identity model requires properties Cyrus leaves out).

Public ids are ``idn_`` + the unpadded URL-safe base64 of the JMAP id (Cyrus's ids contain ``@``
and ``.``, outside the JMAP id alphabet), so :func:`identity_jmap_id` can turn one back.
"""

from __future__ import annotations

import base64
import binascii
import re

from jmapc.methods import IdentityGet

from shipmail.http.errors import NotFound
from shipmail.identities.schemas import MailboxIdentity
from shipmail.jmap import identity as jmap_identity
from shipmail.jmap.request import Request
from shipmail.mailboxes.models import Mailbox
from shipmail.runtime import Services

PREFIX = "idn"
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]{2,400}$")


def identity_wire_id(jmap_id: str) -> str:
    """``idn_`` + unpadded base64url of ``jmap_id``."""
    return f"{PREFIX}_" + base64.urlsafe_b64encode(jmap_id.encode()).decode().rstrip("=")


def identity_jmap_id(wire_id: str) -> str:
    """The JMAP id inside ``wire_id``; 404 ``not_found`` when it is not an identity id."""
    head = f"{PREFIX}_"
    body = wire_id[len(head) :] if wire_id.startswith(head) else ""
    try:
        if not _BASE64URL.match(body):
            raise ValueError
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise NotFound(f"No identity with id {wire_id!r}.") from None


def of(row: Mailbox, ident: jmap_identity.Identity) -> MailboxIdentity:
    """The API's identity for an Identity of ``row``'s account: public id, the mailbox's display
    name (else the server's name), the server's email (else the mailbox's address)."""
    return MailboxIdentity(
        id=identity_wire_id(ident.id),
        name=row.display_name if row.display_name else ident.name,
        email=ident.email or row.address,
    )


async def list_identities(svc: Services, row: Mailbox) -> list[MailboxIdentity]:
    """The identities of ``row``'s account (ONE JMAP request: Identity/get, RFC 8621 section 6.1)."""
    request = Request()
    call = request.add(IdentityGet(ids=None))
    listed = (await svc.jmap.call(row.address, request)).get(call, what="identity listing").get("list") or []
    return [of(row, jmap_identity.Identity.of(raw)) for raw in listed]
