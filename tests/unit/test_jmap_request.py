"""The fast JMAP request encoder (:func:`shipmail.jmap.request.encode_calls`) against jmapc's own
(``APIRequest.from_calls``): the same body, key order included, for every method the gateway builds
and for random JSON arguments; what it does not cover goes through jmapc."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jmapc import Comparator, Ref
from jmapc.methods import (
    EmailGet,
    EmailQuery,
    EmailSet,
    IdentityGet,
    MailboxGet,
    MailboxSet,
    ThreadGet,
)
from jmapc.models import EmailHeader

from shipmail.jmap import email as jemail
from shipmail.jmap import mailbox as jmailbox
from shipmail.jmap import thread as jthread
from shipmail.jmap.blob import URN_BLOB, BlobLookup
from shipmail.jmap.request import Request, encode_calls, jmapc_body
from shipmail.jmap.sieve_script import SieveScriptGet, SieveScriptSet

ACCOUNT = "user@example.com"

# jmapc types these arguments as its models; the gateway sends plain JSON objects.
AnyEmailQuery: Any = EmailQuery
AnyEmailSet: Any = EmailSet
AnyMailboxSet: Any = MailboxSet


def _same(request: Request) -> dict[str, Any]:
    fast, reference = request.body(ACCOUNT), jmapc_body(ACCOUNT, request)
    assert json.dumps(fast) == json.dumps(reference)  # same dict, same key order
    assert (
        request.body_bytes(ACCOUNT)
        == json.dumps(reference, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    )
    return fast


def _requests() -> list[Request]:
    out = []
    r = Request()
    query = r.add(
        jemail.query(
            {
                "operator": "AND",
                "conditions": [{"inMailbox": "m1"}, {"text": 'é "x"'}, {"before": "2026-01-01T00:00:00Z"}],
            },
            jemail.NEWEST_FIRST,
            position=0,
            limit=50,
            calculate_total=True,
        )
    )
    r.add(jemail.full_get(r.ref(query, "/ids"), max_body_value_bytes=jemail.LIST_MAX_BODY_VALUE_BYTES))
    out.append(r)
    r = Request()
    r.add(jemail.full_get(["M1"]))
    out.append(r)
    r = Request()
    thread = r.add(ThreadGet(ids=["T1"]))
    r.add(jemail.full_get(r.ref(thread, jthread.EMAIL_IDS)))
    out.append(r)
    r = Request()
    latest = r.add(jemail.summary_get(["M1", "M2"]))
    threads = r.add(ThreadGet(ids=r.ref(latest, jemail.THREAD_IDS)))
    r.add(EmailGet(ids=r.ref(threads, jthread.EMAIL_IDS), properties=jemail.THREAD_MEMBER_PROPERTIES))
    out.append(r)
    r = Request()
    r.add(MailboxGet(ids=None, properties=jmailbox.PROPERTIES))
    out.append(r)
    r = Request()
    r.add(AnyEmailSet(update={"M1": {"keywords/$seen": None, "keywords/$flagged": True}}, if_in_state="s1"))
    r.add(AnyEmailSet(destroy=["M2"]))
    out.append(r)
    r = Request()
    r.add(AnyMailboxSet(create={"f": {"name": "x", "parentId": None}}))
    r.add(MailboxGet(ids=["#f"], properties=jmailbox.PROPERTIES))
    out.append(r)
    r = Request(capabilities=(URN_BLOB,))
    lookup = r.add(BlobLookup(type_names=["Email"], ids=["G1"]))
    r.add(EmailGet(ids=r.ref(lookup, "/list/*/matchedIds/Email"), properties=["id"]))
    out.append(r)
    r = Request()
    r.add(SieveScriptGet(ids=None))
    r.add(SieveScriptSet(create={"s": {"name": "x", "blobId": "B1"}}, on_success_activate_script="#s"))
    out.append(r)
    r = Request()
    r.add(IdentityGet())
    out.append(r)
    r = Request()  # back-reference inside a filter object (moved last, as "#inMailbox")
    boxes = r.add(MailboxGet(ids=None, properties=["id"]))
    r.add(AnyEmailQuery(filter={"inMailbox": Ref("/ids/0", method=0), "after": "x"}, limit=1))
    out.append(r)
    del boxes
    return out


def test_every_method_the_gateway_builds_is_encoded_as_jmapc_does() -> None:
    for request in _requests():
        assert encode_calls(ACCOUNT, list(request)) is not None  # the fast path, not the fallback
        _same(request)


def test_values_jmapc_rewrites_go_through_jmapc() -> None:
    """A nested model, a datetime field, a Comparator, a headers list, a Ref inside a list: the
    fast encoder declines and the body is jmapc's."""
    cases: list[Any] = [
        AnyEmailQuery(sort=[Comparator(property="receivedAt", is_ascending=False)]),
        AnyEmailSet(create={"d": {"headers": [{"name": "X-A", "value": "1"}]}}),
        AnyEmailSet(create={"d": {"mailboxIds": {"m": True}, "headers": [EmailHeader(name="X-A", value="1")]}}),
        AnyEmailQuery(filter={"operator": "OR", "conditions": [{"inMailbox": Ref("/ids/0", method=0)}]}),
    ]
    for method in cases:
        r = Request()
        r.add(MailboxGet(ids=None))
        r.add(method)
        assert encode_calls(ACCOUNT, list(r)) is None
        assert r.body(ACCOUNT) == jmapc_body(ACCOUNT, r)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    ids=st.none() | st.lists(st.text(max_size=10), max_size=4),
    properties=st.none() | st.lists(st.text(max_size=10), max_size=4),
    filter_=st.none() | st.dictionaries(st.text(max_size=8).filter(lambda k: k != "headers"), _json, max_size=4),
    update=st.none() | st.dictionaries(st.text(max_size=6), st.dictionaries(st.text(max_size=8), _json, max_size=3)),
    position=st.none() | st.integers(0, 10**6),
)
def test_random_arguments_encode_as_jmapc_does(
    ids: list[str] | None,
    properties: list[str] | None,
    filter_: dict[str, Any] | None,
    update: dict[str, dict[str, Any]] | None,
    position: int | None,
) -> None:
    r = Request()
    query = r.add(AnyEmailQuery(filter=filter_, position=position, limit=5))
    r.add(EmailGet(ids=ids if ids is not None else r.ref(query, "/ids"), properties=properties))
    r.add(AnyEmailSet(update=update))
    _same(r)


def test_a_datetime_argument_still_encodes() -> None:
    r = Request()
    r.add(AnyEmailQuery(filter={"before": datetime(2026, 1, 1, tzinfo=UTC).isoformat()}))
    _same(r)
