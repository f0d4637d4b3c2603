"""Shipmail's official SDK (0.6.7) against the app on the real Cyrus (issue 9): the thread methods,
``list_inbox_messages`` and ``inject_sandbox_inbound`` return every key their TypedDicts declare.

:func:`missing_keys` walks a result against the SDK's own type (``typing.get_type_hints`` of its
TypedDicts, through lists, dicts and optionals). Keys other issue-9 items add are listed in
:data:`PENDING` by method, each with the item that adds them: the tests assert that nothing
ELSE is missing (no key of ours regresses), and strict-xfail tests that nothing at all is missing
(they start passing, and so fail as strict xfails, when the items land: then drop the entries).
"""

from __future__ import annotations

import secrets
import types
import typing
from typing import Any

from tests.integration.conftest import ApiEnv
from tests.integration.test_folders import load_sdk

#: Keys the SDK declares that other issue-9 items add, per SDK method.
PENDING: dict[str, set[str]] = {
    # Everything issue 9 asked for is served (thread reply state with SDK 0.6.7's attention names,
    # the full message shape, the sandbox's Message): nothing is pending.
    "list_inbox_threads": set(),
    "get_inbox_thread": set(),
    "list_inbox_messages": set(),
    "inject_sandbox_inbound": set(),
}


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def missing_keys(value: Any, tp: Any, path: str = "") -> set[str]:
    """Keys ``tp`` (an SDK type) declares that ``value`` lacks, as paths (``data[].cc``)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return missing_keys(value, typing.get_args(tp)[0], path)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return set()
        found = [missing_keys(value, arg, path) for arg in typing.get_args(tp) if arg is not type(None)]
        return min(found, key=len) if found else set()
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(tp)
        return set().union(*(missing_keys(v, item, f"{path}[]") for v in value)) if value else set()
    if origin is dict and isinstance(value, dict):
        _, item = typing.get_args(tp)
        return set().union(*(missing_keys(v, item, f"{path}{{}}") for v in value.values())) if value else set()
    if _is_typeddict(tp) and isinstance(value, dict):
        hints = typing.get_type_hints(tp)
        out = set()
        for key in sorted(tp.__required_keys__):
            where = f"{path}.{key}" if path else key
            if key not in value:
                out.add(where)
            else:
                out |= missing_keys(value[key], hints[key], where)
        return out
    return set()


def _sdk_type(name: str) -> Any:
    module = load_sdk().module
    return getattr(module._types.mailbox, name, None) or getattr(module._types.message, name)


def _setup(api: ApiEnv) -> tuple[Any, dict[str, Any]]:
    sdk = load_sdk()
    mbx = api.new_mailbox(f"sdk-keys-{secrets.token_hex(4)}.example", "reader")
    first = (
        f"From: Ann <ann@example.org>\r\nTo: {mbx['address']}\r\nCc: Cat <cat@example.org>\r\n"
        "Subject: Plan\r\nMessage-ID: <plan-keys@example.org>\r\n\r\nHello.\r\n"
    ).encode()
    reply = (
        f"From: Bob <bob@example.org>\r\nTo: {mbx['address']}\r\nSubject: Re: Plan\r\n"
        "Message-ID: <plan-keys-re@example.org>\r\nIn-Reply-To: <plan-keys@example.org>\r\n"
        "References: <plan-keys@example.org>\r\n\r\nHello back.\r\n"
    ).encode()
    assert api.lmtp(mbx["address"], first) == {} and api.lmtp(mbx["address"], reply) == {}
    return sdk.client(api), mbx


def _results(api: ApiEnv) -> dict[str, tuple[Any, str]]:
    """Each checked SDK method's result and the name of its SDK return type."""
    client, mbx = _setup(api)
    mid = mbx["id"]
    threads = client.mailboxes.list_inbox_threads(mid, {"limit": 10})
    thread_id = next(t["thread_id"] for t in threads["data"] if t["message_count"] == 2)
    return {
        "list_inbox_threads": (threads, "InboxThreads"),
        "get_inbox_thread": (client.mailboxes.get_inbox_thread(mid, thread_id), "InboxThread"),
        "list_inbox_messages": (client.mailboxes.list_inbox_messages(mid, {"limit": 10}), "InboxMessages"),
        "inject_sandbox_inbound": (
            client.mailboxes.inject_sandbox_inbound(
                mid, {"from_": "dan@example.org", "subject": "Injected", "text": "hi"}
            ),
            "Message",
        ),
    }


def test_sdk_results_lack_no_key_but_the_pending_ones(api: ApiEnv) -> None:
    results = _results(api)
    for method, (value, type_name) in results.items():
        missing = missing_keys(value, _sdk_type(type_name))
        assert missing <= PENDING[method], (method, sorted(missing - PENDING[method]))


def test_missing_keys_walks_the_sdk_types() -> None:
    """The walker finds a missing key at any depth (so the tests above can fail)."""
    threads_type = _sdk_type("InboxThreads")
    assert "object" in missing_keys({}, threads_type)
    found = missing_keys({"data": [{"object": "inbox_thread_summary"}]}, threads_type)
    assert {"data[].thread_id", "data[].message_count", "pagination", "summary"} <= found
    assert missing_keys({"data": None}, _sdk_type("InboxThread")) >= {"object", "mailbox_id"}


def test_sdk_list_inbox_threads_returns_every_declared_key(api: ApiEnv) -> None:
    """Issue 9's thread item (landed with the reply state, issue 11): every key of the SDK's
    InboxThreads, its summaries' attention names included."""
    value, type_name = _results(api)["list_inbox_threads"]
    assert missing_keys(value, _sdk_type(type_name)) == set()


def test_sdk_get_inbox_thread_returns_every_declared_key(api: ApiEnv) -> None:
    """Every key of the SDK's InboxThread: reply state and each message's reply_text/security."""
    value, type_name = _results(api)["get_inbox_thread"]
    assert missing_keys(value, _sdk_type(type_name)) == set()


def test_sdk_list_inbox_messages_returns_every_declared_key(api: ApiEnv) -> None:
    value, type_name = _results(api)["list_inbox_messages"]
    assert missing_keys(value, _sdk_type(type_name)) == set()


def test_sdk_inject_sandbox_inbound_returns_every_declared_key(api: ApiEnv) -> None:
    value, type_name = _results(api)["inject_sandbox_inbound"]
    assert missing_keys(value, _sdk_type(type_name)) == set()
