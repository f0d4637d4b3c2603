"""The inbox reads' JSON from data dicts (:mod:`shipmail.inbox.rendering`) is byte for byte the
declared model's ``model_validate(data).model_dump_json(by_alias=True)`` (what the routes rendered
before), for varied messages; a model it cannot reproduce is refused; bad data fails as the model
would."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

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
    control characters, empty lists, no attachments."""
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


@pytest.mark.parametrize("seed", range(5))
def test_the_reads_render_the_same_bytes_as_their_models(seed: int) -> None:
    emails = _variants(seed, 12)
    r = row()
    for e in emails:
        _same(InboxFullMessage, inbox.full_data(r, e))
        _same(InboxFullMessage, inbox.full_data(r, e, raw_headers=True))
    snapshot = datetime(2024, 6, 1, tzinfo=timezone(timedelta(hours=2)))
    page = {
        "mailbox_id": r.id,
        "address": r.address,
        "data": [inbox.full_data(r, e) for e in emails],
        "junk_total": seed,
        "pagination": {"limit": 50, "total": 99, "has_more": True, "next_cursor": "c.x", "snapshot_at": snapshot},
    }
    _same(InboxMessages, page)
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
