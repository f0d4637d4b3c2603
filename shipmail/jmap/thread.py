"""JMAP Thread (RFC 8621 section 3): the back-reference path to a thread's Emails and a decoder.

``Thread/get`` is jmapc's :class:`~jmapc.methods.ThreadGet`, used as it is; a Thread is
``{"id", "emailIds"}`` with the ids sorted by ``receivedAt``, oldest first (section 3). Responses
are read as the raw dicts the server sent (cheaper than jmapc's dataclasses_json decoding; see
:mod:`shipmail.jmap.request`).
"""

from __future__ import annotations

from typing import Any

#: Back-reference path (RFC 8620 section 3.7) to the Email ids of every Thread of a Thread/get result.
EMAIL_IDS = "/list/*/emailIds"


def email_ids(thread: dict[str, Any]) -> list[str]:
    """The Email ids of the raw Thread ``thread``, oldest first (as the server sent them)."""
    return [str(i) for i in thread.get("emailIds") or []]
