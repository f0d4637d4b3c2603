"""Drive the official Shipmail Python SDK against a live shipmail server; print JSON results.

Runs in the SDK's own virtualenv (``.venv-sdk``: the SDK's package is also named ``shipmail``) and
never imports this project::

    .venv-sdk/bin/python -I sdk_script.py BASE_URL KEY domains
    .venv-sdk/bin/python -I sdk_script.py BASE_URL KEY mailboxes DOMAIN_ID PENDING_DOMAIN_ID READ_KEY
    .venv-sdk/bin/python -I sdk_script.py BASE_URL KEY domain-dns DOMAIN_ID
    .venv-sdk/bin/python -I sdk_script.py BASE_URL KEY domain-verify DOMAIN_ID
    .venv-sdk/bin/python -I sdk_script.py BASE_URL KEY domain-update DOMAIN_ID MAILBOX_ID|-
    .venv-sdk/bin/python -I sdk_script.py BASE_URL KEY capabilities
    .venv-sdk/bin/python -I sdk_script.py BASE_URL KEY domain-buy

``domains`` creates, lists (one page, limited pages, auto-pagination), gets and deletes domains
and provokes 404/409/422/401. Between the two phases the test marks the first domain verified
with the operator CLI. ``mailboxes`` creates, lists (domain filter, cursor pagination), gets,
updates (display name set and cleared), resets a password and deletes mailboxes and provokes
404/409/422/403/401. The ``domain-*`` and ``capabilities`` phases make one SDK call each (the test
edits its DNS zone between them): ``domains.get_dns_records``, ``domains.verify``,
``domains.update`` (``-`` for null), ``capabilities.get``, and ``domains.search`` /
``domains.register`` (answered 501). Tests in test_sdk.py and test_sdk_domains.py assert on the
printed JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import shipmail
from shipmail import Shipmail, ShipmailError  # type: ignore[attr-defined]  # the SDK, not this project


def error_record(fn: Callable[[], Any]) -> dict[str, Any]:
    """What the SDK raised for ``fn()``, or what it returned if it raised nothing."""
    try:
        returned = fn()
    except ShipmailError as exc:
        return {
            "class": type(exc).__name__,
            "status": exc.status,
            "type": exc.type,
            "message": str(exc),
            "request_id": exc.request_id,
            "details": getattr(exc, "details", None),
        }
    return {"class": None, "returned": returned}


def client(base_url: str, key: str) -> Shipmail:
    return Shipmail(key, base_url=base_url.rstrip("/") + "/v1", max_retries=0, timeout=15)


def domains_phase(sm: Shipmail, bad: Shipmail) -> dict[str, Any]:
    one = sm.domains.create({"name": "sdk-one.example"})
    two = sm.domains.create({"name": "sdk-two.example"})
    pending = sm.domains.create({"name": "sdk-pending.example"})
    listed = sm.domains.list()
    first_page = sm.domains.list({"limit": 1})
    second_page = sm.domains.list({"limit": 1, "cursor": first_page["pagination"]["next_cursor"]})
    auto = [d["id"] for d in sm.domains.list_auto_paginating(limit=2)]
    got = sm.domains.get(one["id"])
    deleted = sm.domains.delete(two["id"])
    return {
        "sdk_version": shipmail.__version__,
        "sdk_file": shipmail.__file__,
        "one": one,
        "two": two,
        "pending": pending,
        "listed_ids": [d["id"] for d in listed["data"]],
        "listed_pagination": listed["pagination"],
        "first_page": first_page,
        "second_page": second_page,
        "auto_ids": auto,
        "got": got,
        "deleted": deleted,
        "after_delete_ids": [d["id"] for d in sm.domains.list()["data"]],
        "errors": {
            "get_deleted": error_record(lambda: sm.domains.get(two["id"])),
            "duplicate": error_record(lambda: sm.domains.create({"name": "SDK-One.example"})),
            "invalid_name": error_record(lambda: sm.domains.create({"name": "not a domain"})),
            "bad_key": error_record(lambda: bad.domains.list()),
        },
    }


def mailboxes_phase(sm: Shipmail, bad: Shipmail, reader: Shipmail, domain_id: str, pending_id: str) -> dict[str, Any]:
    mbx = sm.mailboxes
    alice = mbx.create(
        {"domain_id": domain_id, "address": "alice", "password": "CorrectHorse9", "display_name": "Alice"}
    )
    bob = mbx.create({"domain_id": domain_id, "address": "bob", "password": "CorrectHorse9"})
    carol = mbx.create({"domain_id": domain_id, "address": "carol", "generate_password": True})
    page1 = mbx.list({"domain_id": domain_id, "limit": 2})
    page2 = mbx.list({"domain_id": domain_id, "limit": 2, "cursor": page1["pagination"]["next_cursor"]})
    result: dict[str, Any] = {
        "alice": alice,
        "bob": bob,
        "carol": carol,
        "page1": page1,
        "page2": page2,
        "auto_ids": [m["id"] for m in mbx.list_auto_paginating(domain_id=domain_id, limit=2)],
        "pending_domain_list": mbx.list({"domain_id": pending_id}),
        "got": mbx.get(alice["id"]),
        "display_name_set": mbx.update(alice["id"], {"display_name": "Alice Liddell"}),
        "display_name_cleared": mbx.update(alice["id"], {"display_name": None}),
        "reset": mbx.reset_password(bob["id"], {"password": "N3wAndBetterOne"}),
        "deleted": mbx.delete(carol["id"]),
        "reader_list_ids": [m["id"] for m in reader.mailboxes.list()["data"]],
    }
    result["after_delete_ids"] = [m["id"] for m in mbx.list()["data"]]
    result["errors"] = {
        "get_deleted": error_record(lambda: mbx.get(carol["id"])),
        "get_unknown": error_record(lambda: mbx.get("mbx_doesnotexist")),
        "duplicate": error_record(
            lambda: mbx.create({"domain_id": domain_id, "address": "Alice", "password": "CorrectHorse9"})
        ),
        "weak_password": error_record(
            lambda: mbx.create({"domain_id": domain_id, "address": "dave", "password": "short"})
        ),
        "unverified_domain": error_record(
            lambda: mbx.create({"domain_id": pending_id, "address": "erin", "password": "CorrectHorse9"})
        ),
        "missing_scope": error_record(
            lambda: reader.mailboxes.create({"domain_id": domain_id, "address": "frank", "password": "CorrectHorse9"})
        ),
        "bad_key": error_record(lambda: bad.mailboxes.get(alice["id"])),
        "domain_in_use": error_record(lambda: sm.domains.delete(domain_id)),
        "reset_weak": error_record(lambda: mbx.reset_password(bob["id"], {"password": "password"})),
    }
    return result


def main(argv: list[str]) -> int:
    base_url, key, phase, *rest = argv
    sm = client(base_url, key)
    bad = client(base_url, "sm_live_" + "x" * 40)
    if phase == "domains":
        out = domains_phase(sm, bad)
    elif phase == "mailboxes":
        domain_id, pending_id, read_key = rest
        out = mailboxes_phase(sm, bad, client(base_url, read_key), domain_id, pending_id)
    elif phase == "domain-dns":
        out = error_record(lambda: sm.domains.get_dns_records(rest[0]))
    elif phase == "domain-verify":
        out = error_record(lambda: sm.domains.verify(rest[0]))
    elif phase == "domain-update":
        target = None if rest[1] == "-" else rest[1]
        out = error_record(lambda: sm.domains.update(rest[0], {"catch_all_mailbox_id": target}))
    elif phase == "capabilities":
        out = error_record(lambda: sm.capabilities.get())
    elif phase == "domain-buy":
        out = {
            "search": error_record(lambda: sm.domains.search({"keyword": "shipmail"})),
            "register": error_record(
                lambda: sm.domains.register(
                    {
                        "name": "bought.example",
                        "contact": {
                            "first_name": "A",
                            "last_name": "B",
                            "address1": "1 Road",
                            "city": "Town",
                            "zip": "1000",
                            "country": "BE",
                            "phone": "+32.1",
                            "email": "a@example.org",
                        },
                    }
                )
            ),
        }
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
