"""JMAP SieveScript (RFC 9661): the methods jmapc lacks, as typed subclasses of its bases.

``SieveScript/get`` (section 2.1), ``SieveScript/set`` (section 2.2) with
``onSuccessActivateScript``, ``SieveScript/validate`` (section 2.3). The capability URN differs by server (RFC 9661's
``urn:ietf:params:jmap:sieve``; Cyrus 3.6: ``https://cyrusimap.org/ns/jmap/sieve``), so these
classes declare none: the caller passes the session's in ``Request(capabilities=...)``
(:func:`sieve_capability`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from jmapc.methods.base import Get, MethodWithAccount, Set

URN_SIEVE = "urn:ietf:params:jmap:sieve"
#: Cyrus 3.6's own capability for the same methods.
URN_SIEVE_CYRUS = "https://cyrusimap.org/ns/jmap/sieve"

#: Properties of a script (RFC 9661 section 2).
PROPERTIES = ["id", "name", "isActive"]


class SieveScriptBase:
    method_namespace: ClassVar[str | None] = "SieveScript"
    using: ClassVar[set[str]] = set()


@dataclass
class SieveScriptGet(SieveScriptBase, Get):
    """``SieveScript/get``: ``ids`` (None: all), ``properties``."""


@dataclass
class SieveScriptSet(SieveScriptBase, Set):
    """``SieveScript/set``: ``create`` values are ``{"name", "blobId"}`` (the script uploaded as a
    blob first); ``on_success_activate_script`` is ``#<creation id>`` or a script id."""

    on_success_activate_script: str | None = None


@dataclass
class SieveScriptValidate(SieveScriptBase, MethodWithAccount):
    """``SieveScript/validate``: ``blob_id`` of a script uploaded as a blob; the response's
    ``error`` is null for a script the server would accept, else a SetError (``invalidSieve``)."""

    method_type: ClassVar[str] = "validate"
    blob_id: str = ""


def sieve_capability(preferred: str, session_capabilities: Mapping[str, Any]) -> str:
    """The Sieve capability URN to use: ``preferred`` (the mail server's own) if the session
    offers it, else RFC 9661's or Cyrus's if offered, else ``preferred``."""
    for urn in (preferred, URN_SIEVE, URN_SIEVE_CYRUS):
        if urn in session_capabilities:
            return urn
    return preferred
