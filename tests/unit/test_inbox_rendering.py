"""The inbox reads' JSON from data dicts (:mod:`shipmail.inbox.rendering`) is byte for byte the
declared model's ``model_validate(data).model_dump_json(by_alias=True)`` (what the routes rendered
before), for varied messages, validated or (the message list and one message) written in wire
form by orjson; a model it cannot reproduce is refused; bad data fails as the model would."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pydantic
import pytest

from shipmail.http.schemas import Wire
from shipmail.inbox import replystate
from shipmail.inbox import service as inbox
from shipmail.inbox.models import InboxThreadState
from shipmail.inbox.rendering import DictRenderer
from shipmail.inbox.schemas import InboxFullMessage, InboxMessages, InboxThread, InboxThreads

from .test_inbox_unit import FOLDERS, RAW_EMAIL, row


def _variants(seed: int, count: int) -> list[dict[str, Any]]:
    """Raw JMAP Emails varied from RAW_EMAIL: missing and null properties, offsets, non-ASCII,
    control characters, empty lists, no attachments, trusted and untrusted authentication headers,
    with and without a blob id."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        e = copy.deepcopy(RAW_EMAIL)
        e["id"] = f"M{i}"
        e["threadId"] = f"T{i % 3}"
        e["receivedAt"] = (datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**8))).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        e["sentAt"] = rng.choice(
            [None, "2024-05-01T14:00:00+02:00", "2024-05-01T14:00:00-07:30", "2024-05-01T14:00:00Z"]
        )
        e["subject"] = rng.choice([None, "", 'Résumé ✓ "quoted" \\ \x01 \u2028', "x" * 300])
        e["to"] = rng.choice([None, [], [{"name": None, "email": None}], [{"name": "Zoë", "email": "z@x.example"}]])
        e["keywords"] = rng.choice([{}, {"$seen": True}, {"$flagged": True, "$shipmail-rule-1": True}])
        if rng.random() < 0.3:
            e["attachments"] = []
        if rng.random() < 0.3:
            e.pop("bodyValues", None)
        if rng.random() < 0.3:
            e["headers"] = []
        elif rng.random() < 0.5:
            e["headers"] = [
                *e["headers"],
                {"name": "authentication-results", "value": " mx.example;\r\n spf=pass smtp.mailfrom=x.example"},
                {"name": "X-Spam-Status", "value": " Yes, score=5.2 required=5.0"},
            ]
        if rng.random() < 0.5:  # with a blob: the unchanging part is cached (and read back below)
            e["blobId"] = f"G{seed}-{i}-{rng.random()}"
        out.append(e)
    return out


def _stored(n: int) -> InboxThreadState:
    """A stored user setting (resolved on the newest message M0, ``n`` updates)."""
    at = datetime(2024, 7, 1, tzinfo=UTC)
    return InboxThreadState(
        mailbox_id="mbx_1",
        thread_id="T0",
        user_state="resolved",
        basis_email_id="M0",
        updates=n,
        set_at=at,
        updated_at=at,
    )


def _same(model: type[pydantic.BaseModel], data: dict[str, Any]) -> None:
    assert DictRenderer(model).json(data) == model.model_validate(data).model_dump_json(by_alias=True).encode()


def _same_wire(model: type[pydantic.BaseModel], data: dict[str, Any]) -> None:
    """``data`` is in wire form: orjson writes the model's bytes (not through the fallback)."""
    expected = model.model_validate(data).model_dump_json(by_alias=True).encode()
    assert orjson.dumps(data) == expected
    assert DictRenderer(model).wire_json(data) == expected


@pytest.mark.parametrize("seed", range(5))
def test_the_reads_render_the_same_bytes_as_their_models(seed: int) -> None:
    emails = _variants(seed, 12)
    r = row()
    for e in [*emails, *emails]:
        _same(InboxFullMessage, inbox.full_data(r, e))
        _same(InboxFullMessage, inbox.full_data(r, e, raw_headers=True))
        _same_wire(InboxFullMessage, inbox.full_data(r, e))
        _same_wire(InboxFullMessage, inbox.full_data(r, e, raw_headers=True, authserv_ids={"mx.example"}))
    snapshot = datetime(2024, 6, 1, tzinfo=timezone(timedelta(hours=2)))
    page = {
        "mailbox_id": r.id,
        "address": r.address,
        "data": [inbox.full_data(r, e) for e in emails],
        "junk_total": seed,
        "pagination": {"limit": 50, "total": 99, "has_more": True, "next_cursor": "c.x", "snapshot_at": snapshot},
    }
    _same(InboxMessages, page)
    pagination = {"limit": 50, "total": 99, "has_more": True, "next_cursor": "c.x"}
    wire: dict[str, Any] = {"object": "inbox_messages", **page, "pagination": pagination}
    pagination["snapshot_at"] = inbox.wire_date(snapshot)
    _same_wire(InboxMessages, wire)
    states = [(replystate.classify(emails[: 1 + i % 4], FOLDERS, [r.address]), i % 3) for i in range(len(emails))]
    views = [replystate.derive(c, None if n == 0 else _stored(n)) for c, n in states]
    c0 = states[0][0]
    _same(
        InboxThread,
        {
            "mailbox_id": r.id,
            "address": r.address,
            "thread_id": "thr_T0",
            **inbox._latest_fields(c0, c0.members[-1]),
            **replystate.view_data(views[0], "thr_T0"),
            "data": page["data"],
        },
    )
    threads = {
        "mailbox_id": r.id,
        "address": r.address,
        "data": [inbox._summary_data(r, e, states[i][0], views[i]) for i, e in enumerate(emails)],
        "summary": {"total": 12, "needs_reply": 12, "waiting_on_contact": 0, "resolved": 0, "no_reply_expected": 0},
        "pagination": {"limit": 25, "total": 12, "has_more": False, "next_cursor": None, "snapshot_at": snapshot},
    }
    _same(InboxThreads, threads)


def test_invalid_data_fails_as_the_model_does() -> None:
    data = inbox.full_data(row(), RAW_EMAIL)
    data["size"] = -1
    with pytest.raises(pydantic.ValidationError):
        DictRenderer(InboxFullMessage).json(data)


def test_a_model_with_its_own_validator_is_refused() -> None:
    class Checked(Wire):
        a: int

        @pydantic.model_validator(mode="after")
        def _check(self) -> Checked:
            return self

    with pytest.raises(TypeError):
        DictRenderer(Checked)


@pytest.mark.parametrize(
    ("received", "sent"),
    [
        ("2024-05-01T12:00:00+00:00", "2024-05-01T12:00:00-00:00"),  # written back as Z
        ("2024-05-01T12:00:00.250Z", "2024-05-01T14:00:00.5+02:00"),  # fractions
        ("2024-05-01T12:00:00Z", "2024-05-01T14:00:00+14:00"),
        ("2024-05-01 12:00:00Z", None),
    ],
)
def test_dates_are_written_as_the_model_writes_them(received: str, sent: str | None) -> None:
    e = {**RAW_EMAIL, "receivedAt": received, "sentAt": sent, "blobId": f"G{received}{sent}"}
    _same_wire(InboxFullMessage, inbox.full_data(row(), e))


def test_a_date_that_is_none_fails_as_the_model_does() -> None:
    for value in ("2024-02-30T12:00:00Z", "2024-05-01T25:00:00Z", "yesterday", None):
        with pytest.raises(pydantic.ValidationError):
            inbox.full_data(row(), {**RAW_EMAIL, "receivedAt": value, "blobId": f"G{value}"})


def test_what_orjson_does_not_write_like_the_model_goes_through_the_model() -> None:
    data = inbox.full_data(row(), RAW_EMAIL)
    renderer = DictRenderer(InboxFullMessage)
    for key, value in (("received_at", datetime(2024, 5, 1, tzinfo=UTC)), ("size", 2**64)):
        changed = {**data, key: value}
        assert renderer.wire_json(changed) == renderer.json(changed)
    with pytest.raises(pydantic.ValidationError):  # as the model refuses it
        renderer.wire_json({**data, "size": 2**70, "received_at": "not a date"})


def test_only_the_folders_and_keywords_change_between_listings() -> None:
    """What never changes is rendered once (cached by message, blob and body value lengths); the
    folders and keywords are read at every listing."""
    e = {**copy.deepcopy(RAW_EMAIL), "blobId": "Gcache-test"}
    first = inbox.full_data(row(), e)
    moved = {**e, "keywords": {"$seen": True}, "mailboxIds": {"MBjunk": True}}
    second = inbox.full_data(row(), moved)
    assert second["headers"] is first["headers"]  # the cached part
    assert second["keywords"] == {"$seen": True} and second["folder_ids"] == ["fld_MBjunk"]
    assert {k: v for k, v in second.items() if k not in ("keywords", "folder_ids")} == {
        k: v for k, v in first.items() if k not in ("keywords", "folder_ids")
    }
    _same_wire(InboxFullMessage, second)
    # Another header form, bound on the body values, or another mailbox: another entry.
    assert inbox.full_data(row(), e, raw_headers=True)["headers"] is not first["headers"]
    shorter = {**e, "bodyValues": {k: {**v, "value": v["value"][:1]} for k, v in e["bodyValues"].items()}}
    assert inbox.full_data(row(), shorter)["body_values"] != first["body_values"]
