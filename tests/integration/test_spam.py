"""Spam threshold end to end on the real Cyrus: ``PATCH /v1/mailboxes/{id}/spam-filter`` and the
``X-Spam-Score`` header of mail delivered over LMTP decide Inbox or Junk."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.integration.conftest import ApiEnv
from tests.integration.corpus import jmap

SIEVE_USING = ("urn:ietf:params:jmap:core", "https://cyrusimap.org/ns/jmap/sieve")


def new_mailbox(api: ApiEnv, label: str) -> dict[str, Any]:
    return api.new_mailbox(f"{label}-{secrets.token_hex(4)}.example")


def set_threshold(api: ApiEnv, mbx: dict[str, Any], threshold: Any) -> Any:
    return api.client.patch(f"/v1/mailboxes/{mbx['id']}/spam-filter", json={"threshold": threshold}, headers=api.auth())


def deliver_scored(api: ApiEnv, mbx: dict[str, Any], scores: list[str | None]) -> dict[str, str | None]:
    """Deliver one message per score (None: no header; a list item may hold several header
    lines); {Message-ID: score}."""
    sent = {}
    for score in scores:
        msgid = f"{secrets.token_hex(8)}@spam.example"
        header = "" if score is None else "".join(f"X-Spam-Score: {s}\r\n" for s in score.split("|"))
        raw = (
            f"From: <a@senders.example>\r\nTo: <{mbx['address']}>\r\nSubject: score {score}\r\n"
            f"Message-ID: <{msgid}>\r\n{header}\r\nHello.\r\n"
        ).encode()
        assert api.lmtp(mbx["address"], raw) == {}
        sent[msgid] = score
    return sent


def folders(api: ApiEnv, address: str) -> dict[str, str]:
    """{Message-ID: folder name} of every message of ``address``."""
    out = jmap(
        api,
        address,
        [
            ["Mailbox/get", {"properties": ["name"]}, "m"],
            ["Email/query", {"limit": 1000}, "q"],
            [
                "Email/get",
                {
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": ["messageId", "mailboxIds"],
                },
                "g",
            ],
        ],
    )
    names = {m["id"]: m["name"] for m in out[0][1]["list"]}
    return {e["messageId"][0]: "/".join(names[i] for i in e["mailboxIds"]) for e in out[2][1]["list"]}


def placed(api: ApiEnv, mbx: dict[str, Any], scores: list[str | None]) -> dict[str | None, str]:
    sent = deliver_scored(api, mbx, scores)
    where = folders(api, mbx["address"])
    return {score: where[msgid] for msgid, score in sent.items()}


def test_default_threshold_below_at_above_negative_garbage(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "spam-default")
    assert mbx["spam_filter_threshold"] == 5
    got = placed(
        api,
        mbx,
        [
            "4.9",
            "4.99",
            "5",
            "5.0",
            "5.3",
            "14.2",
            "100",
            "0005.1",
            "+6",  # below / at / above
            "-1.2",
            "-50",
            "0",
            "0.0",  # negative and zero
            "abc",
            "",
            "5abc",
            "1e3",
            "5,3",
            "NaN",
            "inf",  # garbage: not spam
            "1.0|9.5",  # two copies: the higher one counts
            None,  # no score at all
        ],
    )
    junk = {s for s, f in got.items() if f == "Junk"}
    inbox = {s for s, f in got.items() if f == "Inbox"}
    assert junk == {"5", "5.0", "5.3", "14.2", "100", "0005.1", "+6", "1.0|9.5"}
    assert inbox == {"4.9", "4.99", "-1.2", "-50", "0", "0.0", "abc", "", "5abc", "1e3", "5,3", "NaN", "inf", None}


def test_threshold_changes_take_effect(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "spam-change")
    r = set_threshold(api, mbx, 3)
    assert r.status_code == 200, r.text
    assert r.json()["spam_filter_threshold"] == 3
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).json()["spam_filter_threshold"] == 3
    assert placed(api, mbx, ["2.9", "3", "4.9"]) == {"2.9": "Inbox", "3": "Junk", "4.9": "Junk"}
    assert set_threshold(api, mbx, 14).status_code == 200
    assert placed(api, mbx, ["4.9", "13.99", "14", "14.5", "140"]) == {
        "4.9": "Inbox",
        "13.99": "Inbox",
        "14": "Junk",
        "14.5": "Junk",
        "140": "Junk",
    }
    assert set_threshold(api, mbx, 1).status_code == 200
    assert placed(api, mbx, ["0.99", "1", "-3"]) == {"0.99": "Inbox", "1": "Junk", "-3": "Inbox"}


def test_out_of_range_thresholds_are_422(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "spam-422")
    for bad in (0, 15, -1, "7", 7.5, True, None):
        r = set_threshold(api, mbx, bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["details"][0]["field"] == "threshold"
    r = api.client.patch(f"/v1/mailboxes/{mbx['id']}/spam-filter", json={}, headers=api.auth())
    assert r.status_code == 422
    assert placed(api, mbx, ["5.0"]) == {"5.0": "Junk"}  # still the default


def test_refused_script_keeps_the_old_threshold(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipmail.delivery import service as sieve_sync

    mbx = new_mailbox(api, "spam-refused")
    assert set_threshold(api, mbx, 8).status_code == 200
    before = jmap(api, mbx["address"], [["SieveScript/get", {"ids": None}, "s"]], using=SIEVE_USING)[0][1]["list"]
    monkeypatch.setattr(sieve_sync, "build_script", lambda options: 'require "fileinto";\nfileinto :nosuchtag "x";\n')
    r = set_threshold(api, mbx, 2)
    assert r.status_code == 422, r.text
    monkeypatch.undo()
    after = jmap(api, mbx["address"], [["SieveScript/get", {"ids": None}, "s"]], using=SIEVE_USING)[0][1]["list"]
    assert after == before
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).json()["spam_filter_threshold"] == 8
    assert placed(api, mbx, ["7.9", "8"]) == {"7.9": "Inbox", "8": "Junk"}


def test_spam_keeps_the_attachment_keyword(api: ApiEnv) -> None:
    """The has-attachment rule runs before the spam rule: Junk mail is still found by
    ``hasAttachment``."""
    mbx = new_mailbox(api, "spam-attach")
    msgid = f"{secrets.token_hex(8)}@spam.example"
    raw = (
        f"From: <a@senders.example>\r\nTo: <{mbx['address']}>\r\nSubject: invoice\r\nMessage-ID: <{msgid}>\r\n"
        "X-Spam-Score: 12.0\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: attachment; filename=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "JVBERi0xLjQK\r\n--b--\r\n"
    ).encode()
    assert api.lmtp(mbx["address"], raw) == {}
    assert folders(api, mbx["address"])[msgid] == "Junk"
    out = jmap(api, mbx["address"], [["Email/query", {"filter": {"hasAttachment": True}}, "q"]])
    assert len(out[0][1]["ids"]) == 1
