"""The thread scan's cache (:mod:`shipmail.inbox.threadscan`) on its own: how Email/changes
entries move cached threads (the cases a live Cyrus does not produce on demand, such as an
Email changing thread), and the memory bounds. The comparison with the full scan on a real
server is tests/integration/test_thread_scan.py."""

from __future__ import annotations

from typing import Any

import pytest

from shipmail.inbox import threadscan


def email(email_id: str, thread_id: str, **more: Any) -> dict[str, Any]:
    return {"id": email_id, "threadId": thread_id, "receivedAt": "2026-12-06T12:00:00Z", **more}


def account() -> threadscan._Account:
    a = threadscan._Account(state="10")
    a.put("T1", [email("M1", "T1"), email("M2", "T1")])
    a.put("T2", [email("M3", "T2")])
    return a


def test_destroyed_email_leaves_its_thread() -> None:
    a = account()
    a.forget_email("M1")
    assert [e["id"] for e in a.threads["T1"]] == ["M2"] and "M1" not in a.thread_of
    a.forget_email("Munknown")  # not cached: nothing to do
    assert set(a.thread_of) == {"M2", "M3"}


def test_updated_email_is_replaced_in_its_thread() -> None:
    a = account()
    a.update_email(email("M2", "T1", keywords={"$seen": True}))
    assert a.threads["T1"][1]["keywords"] == {"$seen": True} and a.thread_of["M2"] == "T1"


def test_an_email_changing_thread_drops_both_threads() -> None:
    a = account()
    a.update_email(email("M2", "T2"))
    assert a.threads == {} and a.thread_of == {}


def test_an_unknown_email_turning_up_in_a_cached_thread_drops_it() -> None:
    a = account()
    a.update_email(email("M9", "T2"))
    assert "T2" not in a.threads and "M3" not in a.thread_of and "T1" in a.threads
    a.update_email(email("M8", "T7"))  # neither cached: ignored
    assert set(a.threads) == {"T1"}


def test_put_replaces_a_thread_and_its_index() -> None:
    a = account()
    a.put("T1", [email("M2", "T1"), email("M4", "T1")])
    assert "M1" not in a.thread_of and a.thread_of["M4"] == "T1"


def test_cache_keeps_the_most_recently_used_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threadscan, "MAX_ACCOUNTS", 2)
    cache = threadscan._Cache()
    keys = [(f"mbx_{i}", f"a{i}@example.com", None) for i in range(3)]
    cache.put(keys[0], account())
    cache.put(keys[1], account())
    assert cache.get(keys[0]) is not None  # used: now the most recent
    cache.put(keys[2], account())
    assert list(cache.accounts) == [keys[0], keys[2]]


def test_cache_keeps_at_most_max_emails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threadscan, "MAX_EMAILS", 5)
    cache = threadscan._Cache()
    keys = [(f"mbx_{i}", f"a{i}@example.com", None) for i in range(3)]
    cache.put(keys[0], account())  # 3 emails
    cache.put(keys[1], account())  # 6: the first goes
    assert list(cache.accounts) == [keys[1]]
    big = threadscan._Account(state="1")
    big.put("T1", [email(f"M{i}", "T1") for i in range(6)])
    cache.put(keys[2], big)  # more than the bound alone: nothing is kept
    assert list(cache.accounts) == []
