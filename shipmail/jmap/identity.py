"""JMAP Identity (RFC 8621 section 6): the property list and a small raw decoder.

The method is jmapc's ``IdentityGet`` (section 6.1, capability ``urn:ietf:params:jmap:submission``),
used as it is. Responses are read as the raw dicts the server sent, not through jmapc's
``Identity`` model: that model requires every property of section 6 (``name``, ``email``,
``replyTo``, ``bcc``, ``textSignature``, ``htmlSignature``, ``mayDelete``), and Cyrus 3.6's
Identity/get is a stub that leaves ``replyTo`` out (one identity whose id is the address itself,
with an empty name; ``Identity/set`` does not exist), so decoding it would fail. Raw dicts are also
what every other type of this package reads (measured faster, see :mod:`shipmail.jmap.request`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Properties of an Identity (RFC 8621 section 6).
PROPERTIES: list[str] = ["id", "name", "email", "replyTo", "bcc", "textSignature", "htmlSignature", "mayDelete"]


@dataclass(frozen=True)
class Identity:
    """The parts of a raw Identity object the gateway uses: JMAP id, name (``""`` when the server
    has none) and email (None when the server leaves it out)."""

    id: str
    name: str
    email: str | None

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Identity:
        """From one object of an ``Identity/get`` ``list``."""
        email = raw.get("email")
        return cls(id=str(raw["id"]), name=str(raw.get("name") or ""), email=str(email) if email else None)
