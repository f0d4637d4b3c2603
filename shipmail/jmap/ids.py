"""Public ids of JMAP objects: a Shipmail prefix plus the JMAP id (RFC 8620 section 1.2).

``fld_<Mailbox id>`` (folders), ``eml_<Email id>`` (messages), ``thr_<Thread id>`` (threads).
JMAP ids are 1-255 characters of ``[A-Za-z0-9_-]``; anything else cannot name an object, so
:func:`from_wire` answers 404 for it without asking the server.
"""

from __future__ import annotations

import re

from shipmail.http.errors import NotFound

FOLDER = "fld"
EMAIL = "eml"
THREAD = "thr"

_JMAP_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_WHAT = {FOLDER: "folder", EMAIL: "message", THREAD: "thread"}


def to_wire(prefix: str, jmap_id: str) -> str:
    """``<prefix>_<jmap_id>``."""
    return f"{prefix}_{jmap_id}"


def from_wire(prefix: str, wire_id: str) -> str:
    """The JMAP id inside ``wire_id``; 404 ``not_found`` when it is not a ``prefix`` id."""
    head = prefix + "_"
    jmap_id = wire_id[len(head) :] if wire_id.startswith(head) else ""
    if not _JMAP_ID.match(jmap_id):
        raise NotFound(f"No {_WHAT.get(prefix, 'object')} with id {wire_id!r}.")
    return jmap_id
