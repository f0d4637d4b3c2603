"""The official Shipmail Python SDK (``.venv-sdk``, made by scripts/setup) against a live server: the
real ``shipmail serve`` command in a subprocess. The SDK is driven by sdk_script.py in its own
interpreter (it is also named ``shipmail``); these tests assert on the JSON it prints."""

from __future__ import annotations

import imaplib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import require, require_root
from tests.integration.serve_proc import REPO, ServeProcess, serve_running

SDK_PYTHON = REPO / ".venv-sdk" / "bin" / "python"
SCRIPT = Path(__file__).with_name("sdk_script.py")
REQUEST_ID = re.compile(r"^req_[0-9a-f]{24}$")


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    require(SDK_PYTHON.exists(), f"{SDK_PYTHON} is missing: run scripts/setup (it installs the official SDK there)")
    require_root("shipmail serve")
    with serve_running("shipmail-serve-sdk-") as serve:
        yield serve


@pytest.fixture(scope="module")
def key(server: ServeProcess) -> str:
    return server.create_key("sdk-org")


def run_script(server: ServeProcess, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(SDK_PYTHON), "-I", str(SCRIPT), server.base_url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/tmp",
        env=env,
        check=False,
    )
    assert result.returncode == 0, (
        f"sdk_script.py {args[1:]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{server.output(60)}"
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def domains_phase(server: ServeProcess, key: str) -> dict[str, Any]:
    return run_script(server, key, "domains")


def assert_error(record: dict[str, Any], cls: str, status: int, type_: str) -> None:
    assert record["class"] == cls, record
    assert record["status"] == status and record["type"] == type_, record
    assert REQUEST_ID.match(record["request_id"] or ""), record


def test_sdk_domains(domains_phase: dict[str, Any]) -> None:
    r = domains_phase
    assert "/.venv-sdk/" in r["sdk_file"], r["sdk_file"]  # the SDK, not this project
    one, two, pending = r["one"], r["two"], r["pending"]
    assert (one["object"], one["name"], one["status"]) == ("domain", "sdk-one.example", "pending")
    assert one["id"].startswith("dom_")
    assert r["listed_ids"] == [one["id"], two["id"], pending["id"]]
    assert r["listed_pagination"] == {"has_more": False, "next_cursor": None, "limit": 25}
    assert [d["id"] for d in r["first_page"]["data"]] == [one["id"]]
    assert r["first_page"]["pagination"]["has_more"] is True
    assert [d["id"] for d in r["second_page"]["data"]] == [two["id"]]
    assert r["auto_ids"] == [one["id"], two["id"], pending["id"]]
    assert r["got"] == one
    assert r["deleted"] is None
    assert r["after_delete_ids"] == [one["id"], pending["id"]]

    errors = r["errors"]
    assert_error(errors["get_deleted"], "NotFoundError", 404, "not_found")
    assert errors["get_deleted"]["message"] == f"No domain with id {two['id']!r}."
    assert_error(errors["duplicate"], "ConflictError", 409, "conflict")
    assert "sdk-one.example" in errors["duplicate"]["message"]
    assert_error(errors["invalid_name"], "ValidationError", 422, "validation_error")
    assert errors["invalid_name"]["details"] and errors["invalid_name"]["details"][0]["field"] == "name"
    assert_error(errors["bad_key"], "AuthenticationError", 401, "authentication_error")
    ids = [e["request_id"] for e in errors.values()]
    assert len(set(ids)) == len(ids)


def test_sdk_mailboxes(server: ServeProcess, key: str, domains_phase: dict[str, Any]) -> None:
    domain, pending = domains_phase["one"], domains_phase["pending"]
    server.verify_domain(domain["name"])
    read_key = server.create_key("sdk-org", "mailboxes:read")
    r = run_script(server, key, "mailboxes", domain["id"], pending["id"], read_key)

    alice, bob, carol = r["alice"], r["bob"], r["carol"]
    assert (alice["object"], alice["address"], alice["display_name"]) == ("mailbox", "alice@sdk-one.example", "Alice")
    assert alice["domain_id"] == domain["id"] and alice["id"].startswith("mbx_")
    assert bob["display_name"] is None and carol["address"] == "carol@sdk-one.example"
    for mailbox in (alice, bob, carol):
        assert "password" not in mailbox

    assert [m["id"] for m in r["page1"]["data"]] == [alice["id"], bob["id"]]
    assert r["page1"]["pagination"]["has_more"] is True and r["page1"]["pagination"]["limit"] == 2
    assert [m["id"] for m in r["page2"]["data"]] == [carol["id"]]
    assert r["page2"]["pagination"] == {"has_more": False, "next_cursor": None, "limit": 2}
    assert r["auto_ids"] == [alice["id"], bob["id"], carol["id"]]
    assert r["pending_domain_list"]["data"] == []
    assert r["got"] == alice
    assert r["display_name_set"]["display_name"] == "Alice Liddell"
    assert r["display_name_cleared"]["display_name"] is None
    assert r["reset"]["id"] == bob["id"]
    assert r["deleted"] is None
    assert r["reader_list_ids"] == [alice["id"], bob["id"]]  # read after the delete
    assert r["after_delete_ids"] == [alice["id"], bob["id"]]

    errors = r["errors"]
    assert_error(errors["get_deleted"], "NotFoundError", 404, "not_found")
    assert errors["get_deleted"]["message"] == f"No mailbox with id {carol['id']!r}."
    assert_error(errors["get_unknown"], "NotFoundError", 404, "not_found")
    assert_error(errors["duplicate"], "ConflictError", 409, "conflict")
    for name in ("weak_password", "unverified_domain", "reset_weak"):
        assert_error(errors[name], "ValidationError", 422, "validation_error")
        assert errors[name]["details"], (name, errors[name])
        assert all({"field", "code", "message"} <= set(d) for d in errors[name]["details"]), errors[name]
    assert errors["weak_password"]["details"][0]["field"] == "password"
    assert errors["unverified_domain"]["details"][0]["field"] == "domain_id"
    assert "sdk-pending.example" in errors["unverified_domain"]["message"]
    assert errors["get_unknown"]["message"] == "No mailbox with id 'mbx_doesnotexist'."
    assert_error(errors["missing_scope"], "AuthorizationError", 403, "authorization_error")
    assert "mailboxes:write" in errors["missing_scope"]["message"]
    assert_error(errors["bad_key"], "AuthenticationError", 401, "authentication_error")
    assert_error(errors["domain_in_use"], "ConflictError", 409, "conflict")
    ids = [e["request_id"] for e in errors.values()]
    assert len(set(ids)) == len(ids)

    # The password set through the SDK is the one the mail server accepts.
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=15)
    try:
        imap.login(bob["address"], "N3wAndBetterOne")
        assert imap.select("INBOX")[0] == "OK"
    finally:
        imap.logout()
