"""Corpus messages (/work/shared/corpus/mail-fixtures) made deliverable, and small JMAP helpers
for tests that look at a mailbox's mail directly (not through the API)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import ApiEnv

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "mail-fixtures"

_MESSAGE_ID = re.compile(rb"(?im)^message-id:[^\n]*\n(?:[ \t][^\n]*\n)*")


def corpus_bytes(relative: str) -> bytes:
    """A corpus file without its mbox ``From `` line (LMTP refuses it as an invalid header)."""
    raw = (CORPUS / relative).read_bytes()
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1]
    return raw


def unique(raw: bytes, tag: str = "t") -> tuple[bytes, str]:
    """``raw`` with a fresh Message-ID (Cyrus drops a second delivery of the same Message-ID to a
    mailbox), and that id without brackets."""
    mid = f"{tag}.{secrets.token_hex(8)}@corpus.test"
    sep, eol = (b"\r\n\r\n", b"\r\n") if b"\r\n\r\n" in raw else (b"\n\n", b"\n")
    head, _, body = raw.partition(sep)
    head = _MESSAGE_ID.sub(b"", head + eol)
    return head + f"Message-ID: <{mid}>".encode() + eol + eol + body, mid


def jmap(
    api: ApiEnv,
    address: str,
    calls: list[list[Any]],
    using: tuple[str, ...] = ("urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"),
) -> list[Any]:
    """One JMAP request for ``address`` (Bearer JWT), straight to Cyrus; the methodResponses."""
    access = api.cyrus.server.jmap_access(address)
    for call in calls:
        call[1].setdefault("accountId", address)
    r = httpx.post(
        access.session_url,
        json={"using": list(using), "methodCalls": calls},
        headers={"Authorization": access.authorization},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["methodResponses"]  # type: ignore[no-any-return]


def query_ids(api: ApiEnv, address: str, flt: dict[str, Any]) -> set[str]:
    responses = jmap(api, address, [["Email/query", {"filter": flt}, "q"]])
    assert responses[0][0] == "Email/query", responses
    return set(responses[0][1]["ids"])


def ids_by_message_id(api: ApiEnv, address: str) -> dict[str, str]:
    """{Message-ID without brackets: JMAP id} of every message of ``address``."""
    responses = jmap(
        api,
        address,
        [
            ["Email/query", {}, "q"],
            [
                "Email/get",
                {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}, "properties": ["id", "messageId"]},
                "g",
            ],
        ],
    )
    return {m: e["id"] for e in responses[1][1]["list"] for m in e.get("messageId") or []}
