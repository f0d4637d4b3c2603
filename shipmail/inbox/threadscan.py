"""The thread list's reply-state scan, kept incrementally with JMAP ``Email/changes``.

Source: Shipmail ``listMailboxInboxThreads`` (the ``summary`` counts and the reply-queue views
cover the :data:`SCAN_THREADS` threads with the newest matching mail; README "Reply state").

What the scan needs
    The threads of the :data:`SCAN_THREADS` newest matching messages (Email/query
    ``collapseThreads``) with every member of each (RFC 8621 Thread/get, Email/get of
    :data:`~shipmail.inbox.replystate.MEMBER_PROPERTIES`), classified
    (:func:`~shipmail.inbox.replystate.classify`). The query runs on every request (ids only);
    the members are what costs (hundreds of threads, thousands of Emails).

The cache
    Per JMAP account (bounded, least recently used first out; per process: it is keyed by the
    server's own state string, so workers need not agree), the members of the threads read so
    far and the account's Email state string (RFC 8620 section 5.1) they are at least as new as.
    The next request asks ``Email/changes`` since that state (RFC 8620 section 5.2) in the same
    JMAP request as the query, and with it, by back-reference, Email/get of the updated Emails
    and Thread/get + Email/get of the members of the created Emails' threads. Then:

    - a destroyed Email leaves its cached thread (the other members are unchanged, or they would
      be listed as updated);
    - an updated Email is replaced in its thread; one whose thread changed (or that turns up in
      a cached thread it was not in) drops the threads concerned, which are read again when needed;
    - the threads of created Emails are replaced by what was just read (their whole membership).

    Threads of the query that are not cached (never read, or dropped) are read in one more JMAP
    request (Email/get of their thread ids, Thread/get, Email/get of the members, by
    back-reference). ``cannotCalculateChanges`` (or any other error) and ``hasMoreChanges``
    (more than :data:`MAX_CHANGES`) drop the account's cache and read the window again, as the
    first request does. The state kept is one taken before the reads it covers (the
    ``newState`` of Email/changes, or an Email/get with no ids at the head of a full read), so a
    change racing a read is seen again by the next Email/changes, never lost.

Cyrus 3.6.1 (measured): the Email state is the account's modseq; Email/changes is exact (an Email
created and destroyed since the state is not listed, one created and then updated is listed as
created only); ``maxChanges`` counts Emails and cuts at a modseq boundary (``hasMoreChanges``,
an intermediate ``newState``), 0 is ``invalidArguments`` (without it, no cap was met); a
malformed state answers ``invalidArguments``; a state beyond the account's own answers no
changes and the current state (not an error): so a state is only ever sent to the account that
gave it (the key holds the system folders' ids, new when an account is made again).

The memory kept is bounded by :data:`MAX_ACCOUNTS` and :data:`MAX_EMAILS`.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from jmapc.methods import EmailChanges, EmailGet, ThreadGet

from shipmail.inbox import replystate
from shipmail.inbox.models import InboxThreadState
from shipmail.jmap import email as jemail
from shipmail.jmap import thread as jthread
from shipmail.jmap.request import Call, Request, Results
from shipmail.mailboxes.models import Mailbox
from shipmail.runtime import Services

#: Threads (those with the newest matching mail) whose reply state one thread list looks at.
SCAN_THREADS = 500
#: What the scan reads of each thread's newest matching message (its thread).
SCAN_LATEST_PROPERTIES = ["id", "threadId", "receivedAt"]
#: Emails asked for in one Email/get when the server refused them all at once (its
#: ``maxObjectsInGet`` is 4096 for Cyrus 3.6).
GET_CHUNK = 4000
#: ``maxChanges`` of the Email/changes call: beyond it (``hasMoreChanges``) the window is read
#: again in full, which then costs less than reading every changed Email's thread.
MAX_CHANGES = 1000
#: JMAP accounts whose scan one process keeps (least recently used out).
MAX_ACCOUNTS = 256
#: Emails kept in all (least recently used accounts out; an account with more alone is not
#: kept): about 5.7 KB each with its thread's classification (measured), ~115 MB at most.
MAX_EMAILS = 20_000
#: Threads kept per account; beyond it only the threads of the current request are kept.
MAX_THREADS = 4 * SCAN_THREADS
#: False: every scan reads the window in full and keeps nothing (what the tests compare with).
INCREMENTAL = True


@dataclass
class _Account:
    """The cached threads of one JMAP account, at least as new as Email state ``state``."""

    state: str
    threads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # thread id -> members
    thread_of: dict[str, str] = field(default_factory=dict)  # member email id -> thread id
    basis: Any = None  # what ``classified`` was computed with (folders, own addresses)
    #: per thread: its members classified and their reply state when the user set nothing
    classified: dict[str, tuple[replystate.Classified, replystate.ReplyView]] = field(default_factory=dict)

    def put(self, thread_id: str, members: list[dict[str, Any]]) -> None:
        self.drop(thread_id)
        self.threads[thread_id] = members
        for e in members:
            self.thread_of[str(e["id"])] = thread_id

    def drop(self, thread_id: str) -> None:
        for e in self.threads.pop(thread_id, ()):
            if self.thread_of.get(str(e["id"])) == thread_id:
                del self.thread_of[str(e["id"])]
        self.classified.pop(thread_id, None)

    def forget_email(self, email_id: str) -> None:
        """Email ``email_id`` is gone: out of its thread (which is otherwise unchanged)."""
        thread_id = self.thread_of.pop(email_id, None)
        if thread_id is None:
            return
        members = self.threads.get(thread_id) or []
        self.threads[thread_id] = [e for e in members if str(e["id"]) != email_id]
        self.classified.pop(thread_id, None)

    def update_email(self, e: dict[str, Any]) -> None:
        """Email ``e`` (fresh) was updated: replaced in its thread."""
        email_id, thread_id = str(e["id"]), str(e["threadId"])
        known = self.thread_of.get(email_id)
        if known is None:
            if thread_id in self.threads:  # joined a cached thread without being created: reread it
                self.drop(thread_id)
            return
        if known != thread_id:  # moved between threads: reread both when needed
            self.drop(known)
            self.drop(thread_id)
            return
        self.threads[thread_id] = [e if str(m["id"]) == email_id else m for m in self.threads[thread_id]]
        self.classified.pop(thread_id, None)


#: A cached account: the mailbox row's id, its address and its system folders' JMAP ids (an
#: account made again on the server, ``shipmail doctor --repair``, has new folder ids: a state
#: string of the old one is never sent to the new one, whose state may have passed it).
_Key = tuple[str, str, str | None]


class _Cache:
    """The scans of the accounts one JMAP client serves, least recently used first."""

    def __init__(self) -> None:
        self.accounts: OrderedDict[_Key, _Account] = OrderedDict()

    def get(self, key: _Key) -> _Account | None:
        account = self.accounts.get(key)
        if account is not None:
            self.accounts.move_to_end(key)
        return account

    def put(self, key: _Key, account: _Account) -> None:
        self.accounts[key] = account
        self.accounts.move_to_end(key)
        emails = sum(len(a.thread_of) for a in self.accounts.values())
        while self.accounts and (len(self.accounts) > MAX_ACCOUNTS or emails > MAX_EMAILS):
            _, out = self.accounts.popitem(last=False)
            emails -= len(out.thread_of)

    def discard(self, key: _Key) -> None:
        self.accounts.pop(key, None)


#: One cache per JMAP client (an app's :attr:`Services.jmap`; per mail server, so one server's
#: state strings are never compared with another's).
_CACHES: weakref.WeakKeyDictionary[object, _Cache] = weakref.WeakKeyDictionary()


def _cache(svc: Services) -> _Cache:
    cache = _CACHES.get(svc.jmap)
    if cache is None:
        cache = _CACHES[svc.jmap] = _Cache()
    return cache


def clear(svc: Services) -> None:
    """Forget every cached scan of ``svc``'s mail server (tests compare with the full scan)."""
    _CACHES.pop(svc.jmap, None)


@dataclass
class Scanned:
    """The scan's result: the window's newest matching messages (``id``, ``threadId``,
    ``receivedAt``), newest first, the query's ``total`` (threads matching) and the members of
    their threads."""

    latest: list[dict[str, Any]]
    total: int
    members: dict[str, list[dict[str, Any]]]
    _account: _Account | None

    def state(
        self,
        thread_id: str,
        fallback: list[dict[str, Any]],
        folders: dict[str, str],
        own: Iterable[str],
        stored: InboxThreadState | None,
    ) -> tuple[replystate.Classified, replystate.ReplyView]:
        """Thread ``thread_id`` classified (:func:`replystate.classify`: its scanned members, else
        ``fallback``) and its reply state with what the user set (``stored``,
        :func:`replystate.derive`); both computed once per thread while its members stay the
        same (the state only when the user set nothing)."""
        members = self.members.get(thread_id)
        account = self._account
        if members is None or account is None or account.threads.get(thread_id) is not members:
            c = replystate.classify(members or fallback, folders, own)
            return c, replystate.derive(c, stored)
        known = account.classified.get(thread_id)
        if known is None:
            c = replystate.classify(members, folders, own)
            known = account.classified[thread_id] = (c, replystate.derive(c, None))
        if stored is None:
            return known
        return known[0], replystate.derive(known[0], stored)


class ThreadScan:
    """One thread list's scan of ``row``'s account: :meth:`add` its calls to the list's JMAP
    request, then :meth:`finish` with the results (at most one more JMAP request)."""

    def __init__(self, svc: Services, row: Mailbox, *, incremental: bool | None = None) -> None:
        self.svc, self.row = svc, row
        self.key: _Key = (row.id, row.address, row.folder_ids)
        self.cache = _cache(svc)
        self.incremental = INCREMENTAL if incremental is None else incremental
        self.account = self.cache.get(self.key) if self.incremental else None
        self._calls: dict[str, Call] = {}

    def add(self, request: Request, filter: jemail.Filter) -> None:
        """Add the scan's calls (see the module docstring) to ``request``."""
        c = self._calls
        if self.account is not None:
            c["changes"] = request.add(EmailChanges(since_state=self.account.state, max_changes=MAX_CHANGES))
            c["updated"] = request.add(
                EmailGet(ids=request.ref(c["changes"], "/updated"), properties=replystate.MEMBER_PROPERTIES)
            )
            c["created"] = request.add(EmailGet(ids=request.ref(c["changes"], "/created"), properties=["threadId"]))
            c["created_threads"] = request.add(ThreadGet(ids=request.ref(c["created"], jemail.THREAD_IDS)))
            c["created_members"] = request.add(
                EmailGet(
                    ids=request.ref(c["created_threads"], jthread.EMAIL_IDS), properties=replystate.MEMBER_PROPERTIES
                )
            )
        else:
            c["state"] = request.add(EmailGet(ids=[], properties=["id"]))
        c["query"] = request.add(
            jemail.query(
                filter, jemail.NEWEST_FIRST, collapse_threads=True, position=0, limit=SCAN_THREADS, calculate_total=True
            )
        )
        if self.account is None:
            c["latest"] = request.add(EmailGet(ids=request.ref(c["query"], "/ids"), properties=SCAN_LATEST_PROPERTIES))
            c["threads"] = request.add(ThreadGet(ids=request.ref(c["latest"], jemail.THREAD_IDS)))
            c["members"] = request.add(
                EmailGet(ids=request.ref(c["threads"], jthread.EMAIL_IDS), properties=replystate.MEMBER_PROPERTIES)
            )

    async def finish(self, results: Results, folders: dict[str, str], own: Iterable[str]) -> Scanned:
        """The scan's :class:`Scanned` from ``results`` (the request :meth:`add` added to), the
        cache brought up to date; one more JMAP request when threads of the window are not
        cached (or the cache could not be brought up to date)."""
        c = self._calls
        found = results.get(c["query"], what="thread search")
        order = [str(i) for i in found.get("ids") or []]
        total = int(found.get("total") or 0)
        basis = (tuple(sorted(folders.items())), frozenset(a.lower() for a in own))
        account = self.account
        if account is not None and not self._apply(account, results):
            self.cache.discard(self.key)
            account = None
        if account is None:
            if "members" in c:  # read in full with the query
                account = _Account(state=str(results.get(c["state"], what="thread list").get("state") or ""))
                members = await self._members(results, c["threads"], c["members"])
                self._put_all(account, members)
            else:
                account = await self._read(order, None)
        else:
            missing = [i for i in order if i not in account.thread_of]
            if missing:
                await self._read(missing, account)
        if account.basis != basis:
            account.basis, account.classified = basis, {}
        latest: list[dict[str, Any]] = []
        window: dict[str, list[dict[str, Any]]] = {}
        for email_id in order:
            thread_id = account.thread_of.get(email_id)
            if thread_id is None:  # gone meanwhile (the full scan's Email/get would not list it)
                continue
            members = account.threads[thread_id]
            e = next(m for m in members if str(m["id"]) == email_id)
            latest.append({"id": e["id"], "threadId": e["threadId"], "receivedAt": e["receivedAt"]})
            window[thread_id] = members
        if len(account.threads) > MAX_THREADS:
            for thread_id in [t for t in account.threads if t not in window]:
                account.drop(thread_id)
        if self.incremental and account.state:
            self.cache.put(self.key, account)
        return Scanned(latest=latest, total=total, members=window, _account=account)

    def _apply(self, account: _Account, results: Results) -> bool:
        """Bring ``account`` up to the Email/changes of ``results``; False when it cannot be."""
        c = self._calls
        names = ("changes", "updated", "created", "created_threads", "created_members")
        if any(results.error_type(c[n]) is not None for n in names):
            return False
        changes = results.get(c["changes"], what="thread list")
        if changes.get("hasMoreChanges") or not changes.get("newState"):
            return False
        for email_id in changes.get("destroyed") or []:
            account.forget_email(str(email_id))
        updated = results.get(c["updated"], what="thread list")
        for email_id in updated.get("notFound") or []:
            account.forget_email(str(email_id))
        for e in updated.get("list") or []:
            account.update_email(e)
        members_of: dict[str, dict[str, Any]] = {
            str(e["id"]): e for e in results.get(c["created_members"], what="thread list").get("list") or []
        }
        for t in results.get(c["created_threads"], what="thread list").get("list") or []:
            account.put(str(t["id"]), [members_of[i] for i in jthread.email_ids(t) if i in members_of])
        account.state = str(changes["newState"])
        return True

    def _put_all(self, account: _Account, members: list[dict[str, Any]]) -> None:
        by_thread: dict[str, list[dict[str, Any]]] = {}
        for e in members:
            by_thread.setdefault(str(e["threadId"]), []).append(e)
        for thread_id, listed in by_thread.items():
            account.put(thread_id, listed)

    async def _read(self, email_ids: list[str], account: _Account | None) -> _Account:
        """Read the threads of ``email_ids`` into ``account`` (a new one, at the state read
        first, when None): ONE JMAP request (Email/get of their thread ids, Thread/get, Email/get
        of the members, by back-reference)."""
        request = Request()
        state = request.add(EmailGet(ids=[], properties=["id"])) if account is None else None
        latest = request.add(EmailGet(ids=email_ids, properties=["threadId"]))
        threads = request.add(ThreadGet(ids=request.ref(latest, jemail.THREAD_IDS)))
        members = request.add(
            EmailGet(ids=request.ref(threads, jthread.EMAIL_IDS), properties=replystate.MEMBER_PROPERTIES)
        )
        results = await self.svc.jmap.call(self.row.address, request)
        if account is None:
            account = _Account(state=str(results.get(state, what="thread list").get("state") or "") if state else "")
        self._put_all(account, await self._members(results, threads, members))
        return account

    async def _members(self, results: Results, threads: Call, members: Call) -> list[dict[str, Any]]:
        """The members an Email/get returned; when there were more than the server gets at once
        (RFC 8620 ``requestTooLarge``), fetched again in chunks of :data:`GET_CHUNK` (one more
        JMAP request)."""
        if results.error_type(members) != "requestTooLarge":
            return list(results.get(members, what="thread list").get("list") or [])
        wanted = [i for t in results.get(threads, what="thread list").get("list") or [] for i in jthread.email_ids(t)]
        request = Request()
        calls = [
            request.add(EmailGet(ids=wanted[i : i + GET_CHUNK], properties=replystate.MEMBER_PROPERTIES))
            for i in range(0, len(wanted), GET_CHUNK)
        ]
        if not calls:
            return []
        again = await self.svc.jmap.call(self.row.address, request)
        return [e for call in calls for e in again.get(call, what="thread list").get("list") or []]
