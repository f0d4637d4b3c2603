"""JMAP Blob (RFC 9404): ``Blob/lookup``, which jmapc lacks, as a typed subclass of its bases.

``Blob/lookup`` (RFC 9404) answers which objects of the given types reference a blob:
``{"list": [{"id": <blobId>, "matchedIds": {"Email": [<Email id>, ...]}}], "notFound": [...]}``.
The capability differs by server (RFC 9404's ``urn:ietf:params:jmap:blob``; Cyrus 3.6:
``https://cyrusimap.org/ns/jmap/blob``), so :class:`BlobLookup` declares none: the caller passes
the session's (:func:`blob_capability`) in ``Request(capabilities=...)``.

Downloading and uploading blobs (RFC 8620 sections 6.1, 6.2) is plain HTTP on the session's
``downloadUrl``/``uploadUrl``: :meth:`shipmail.jmap.client.JmapClient.open_blob` and
:meth:`~shipmail.jmap.client.JmapClient.upload`. Responses are read as raw dicts (cheaper than
jmapc's dataclasses_json decoding; see :mod:`shipmail.jmap.request`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from jmapc.methods.base import MethodWithAccount
from jmapc.models import ListOrRef

URN_BLOB = "urn:ietf:params:jmap:blob"
#: Cyrus 3.6's own capability for the same methods.
URN_BLOB_CYRUS = "https://cyrusimap.org/ns/jmap/blob"

#: Back-reference path (RFC 8620 section 3.7) to the Email ids a Blob/lookup matched.
MATCHED_EMAIL_IDS = "/list/*/matchedIds/Email"


class BlobBase:
    method_namespace: ClassVar[str | None] = "Blob"
    using: ClassVar[set[str]] = set()


@dataclass
class BlobLookup(BlobBase, MethodWithAccount):
    """``Blob/lookup``: the objects of ``type_names`` (``["Email"]``, ...) referencing each of
    ``ids`` (blob ids)."""

    method_type: ClassVar[str | None] = "lookup"

    type_names: list[str]
    ids: ListOrRef[str]


def blob_capability(session_capabilities: Mapping[str, Any]) -> str | None:
    """The Blob/lookup capability URN the session offers (RFC 9404's, else Cyrus's), or None."""
    for urn in (URN_BLOB, URN_BLOB_CYRUS):
        if urn in session_capabilities:
            return urn
    return None
