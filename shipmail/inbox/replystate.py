"""A thread's reply state (Shipmail's ``InboxThreadReplyState``), derived from its messages and
what the user set.

Source: Shipmail ``listMailboxInboxThreads`` (``reply_state``, ``reply_version``,
``needs_reply_since``, ``summary``), ``updateMailboxInboxThreadReplyState``,
``createMailboxInboxReplyDraft``/``sendMailboxInboxReplyDraft`` (``expected_reply_version``).

The rule
    A thread's messages are split into drafts (``$draft`` or in Drafts: left out of everything),
    outbound (in Sent, or From one of the mailbox's own addresses: its address and aliases) and
    inbound (the rest). From the newest non-draft message:

    - inbound: ``needs_reply`` since the first inbound message after the last outbound one;
    - outbound: ``waiting_on_contact``;
    - none (a thread of drafts only): ``no_reply_expected``.

    What the user set (``resolved``, ``no_reply_expected``, or ``needs_reply`` to reopen) holds
    while the thread's newest non-draft message is the one it was set on; a newer message (a new
    inbound one, or a reply sent) lapses it, and the derived state applies again. A reopened
    thread ``needs_reply`` since the moment it was reopened unless the messages say earlier.

``reply_version`` = the thread's non-draft messages + the user's updates (at least 1): it
grows with every message that arrives or is sent and with every update, so a client holding
an older version (a draft bound to it, an update based on it) learns the thread moved on (409).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shipmail.inbox.models import InboxThreadState
from shipmail.jmap import email as jemail

ReplyState = Literal["needs_reply", "waiting_on_contact", "resolved", "no_reply_expected"]
#: Every reply state, in the order of the reference's enum (the keys of the list's ``summary``).
REPLY_STATES: tuple[ReplyState, ...] = ("needs_reply", "waiting_on_contact", "resolved", "no_reply_expected")

#: Shipmail SDK 0.6.7's ``attention_state`` of each reply state, and back.
ATTENTION_OF: dict[str, str] = {
    "needs_reply": "needs_reply",
    "waiting_on_contact": "waiting_on_them",
    "resolved": "done",
    "no_reply_expected": "no_action",
}
REPLY_STATE_OF_ATTENTION: dict[str, str] = {v: k for k, v in ATTENTION_OF.items()}


@dataclass(frozen=True)
class Classified:
    """A thread's messages (raw JMAP Emails with :data:`MEMBER_PROPERTIES`), oldest first."""

    members: list[dict[str, Any]]  # all, drafts included
    messages: list[dict[str, Any]]  # non-draft
    inbound: list[dict[str, Any]]
    outbound: list[dict[str, Any]]

    @property
    def newest(self) -> dict[str, Any] | None:
        """The newest non-draft message."""
        return self.messages[-1] if self.messages else None


@dataclass(frozen=True)
class ReplyView:
    """A thread's reply state as the API shows it."""

    state: ReplyState
    version: int
    needs_reply_since: str | None  # RFC 3339 UTC, as JMAP's receivedAt
    done_at: datetime | None  # when the user resolved it (SDK ``done_at``)
    basis_email_id: str | None  # the newest non-draft message (JMAP id)
    updates: int = 0  # the user's updates so far (the stored row's, 0 without one)


#: What the reply state reads of every message of a thread: JMAP's thread member properties and
#: the threading ids that order the messages of one received-at second.
MEMBER_PROPERTIES: list[str] = [*jemail.THREAD_MEMBER_PROPERTIES, "messageId", "inReplyTo"]


def _depth(parent: dict[str, str | None], email_id: str) -> int:
    """How many replies up ``email_id`` is from a message without a parent in ``parent``."""
    seen, n = {email_id}, 0
    while (up := parent.get(email_id)) is not None and up not in seen:
        seen.add(up)
        email_id, n = up, n + 1
    return n


def chronological(members: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``members`` oldest first: by ``receivedAt`` (whole seconds in Cyrus 3.6); within one
    second a message after the one it replies to (its ``inReplyTo`` names that one's
    ``messageId``: a reply sent within the second of the message it answers is newer), then by
    id."""
    ordered = sorted(members, key=lambda e: (str(e["receivedAt"]), str(e["id"])))
    by_second: dict[str, list[dict[str, Any]]] = {}
    for e in ordered:
        by_second.setdefault(str(e["receivedAt"]), []).append(e)
    out: list[dict[str, Any]] = []
    for group in by_second.values():
        if len(group) == 1:
            out.extend(group)
            continue
        owner = {str(m): str(e["id"]) for e in group for m in e.get("messageId") or []}
        parent: dict[str, str | None] = {
            str(e["id"]): next((owner[r] for r in e.get("inReplyTo") or [] if r in owner), None) for e in group
        }

        depths = {str(e["id"]): _depth(parent, str(e["id"])) for e in group}
        out.extend(sorted(group, key=lambda e: (depths[str(e["id"])], str(e["id"]))))
    return out


def classify(members: Iterable[dict[str, Any]], folders: dict[str, str], own_addresses: Iterable[str]) -> Classified:
    """Split ``members`` (one thread's Emails) into drafts, outbound and inbound (module docstring)."""
    drafts, sent = folders.get("drafts"), folders.get("sent")
    own = {a.lower() for a in own_addresses}
    ordered = chronological(members)
    messages, inbound, outbound = [], [], []
    for e in ordered:
        boxes = set(jemail.mailbox_ids(e))
        if (e.get("keywords") or {}).get("$draft") or (drafts is not None and drafts in boxes):
            continue
        messages.append(e)
        senders = {str(a.get("email") or "").lower() for a in e.get("from") or []}
        if (sent is not None and sent in boxes) or (senders & own):
            outbound.append(e)
        else:
            inbound.append(e)
    return Classified(members=ordered, messages=messages, inbound=inbound, outbound=outbound)


def derive(c: Classified, stored: InboxThreadState | None) -> ReplyView:
    """The reply state of the classified thread ``c`` with what the user set (``stored``)."""
    updates = stored.updates if stored is not None else 0
    version = max(1, len(c.messages) + updates)
    newest = c.newest
    basis = str(newest["id"]) if newest is not None else None
    state: ReplyState
    since: str | None = None
    if newest is None:
        state = "no_reply_expected"
    elif c.inbound and c.inbound[-1] is newest:
        state = "needs_reply"
        position = {id(e): i for i, e in enumerate(c.messages)}
        last_out = position[id(c.outbound[-1])] if c.outbound else -1
        first = next(e for e in c.inbound if position[id(e)] > last_out)
        since = str(first["receivedAt"])
    else:
        state = "waiting_on_contact"
    done_at = None
    if stored is not None and stored.user_state is not None and stored.basis_email_id == basis:
        user = stored.user_state
        if user == "needs_reply":
            if state != "needs_reply":
                since = jemail.utc_date(stored.set_at) if stored.set_at is not None else None
            state = "needs_reply"
        elif user in ("resolved", "no_reply_expected"):
            state = "resolved" if user == "resolved" else "no_reply_expected"
            since = None
            done_at = stored.set_at if user == "resolved" else None
    return ReplyView(
        state=state, version=version, needs_reply_since=since, done_at=done_at, basis_email_id=basis, updates=updates
    )


def view_data(view: ReplyView, thread_wire_id: str) -> dict[str, Any]:
    """The reply-state fields of a thread summary (the reference's names and SDK 0.6.7's)."""
    return {
        "reply_state": view.state,
        "reply_version": view.version,
        "needs_reply_since": view.needs_reply_since,
        "conversation_id": thread_wire_id,
        "attention_state": ATTENTION_OF[view.state],
        "version": view.version,
        "attention_since": view.needs_reply_since,
        "done_at": view.done_at,
        "follow_up_at": None,
        "assigned_member_id": None,
    }
