"""A domain set up from the API alone, through the official SDK, against the real ``shipmail
serve`` (Cyrus included) whose DNS checks ask an authoritative DNS server the test runs on
127.0.0.1 (``tests.dnsserver``): ``domains.get_dns_records``, ``domains.verify`` (pending ->
verified -> degraded), a mailbox on the DNS-verified domain, ``domains.update`` (catch-all),
``capabilities.get``, and ``domains.search`` / ``domains.register`` answered 501 not_supported."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.dnsserver import Zone, dns_server
from tests.integration.conftest import require, require_root
from tests.integration.serve_proc import ServeProcess, serve_running
from tests.integration.test_sdk import SDK_PYTHON, run_script

MX_HOST = "mx.sdk.shipmail.test"
NAME = "dns-sdk.example"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Zone, ServeProcess]]:
    require(SDK_PYTHON.exists(), f"{SDK_PYTHON} is missing: run scripts/setup (it installs the official SDK there)")
    require_root("shipmail serve")
    with (
        dns_server() as (zone, resolver),
        serve_running(
            "shipmail-serve-dns-",
            extra_env={
                "SHIPMAIL_DNS_RESOLVER": resolver,
                "SHIPMAIL_DNS_TIMEOUT": "1",
                "SHIPMAIL_MX_HOST": MX_HOST,
                "SHIPMAIL_OUTBOUND_HOST": "out.sdk.shipmail.test",
                "SHIPMAIL_RATELIMIT_VERIFICATION": "100/minute",
            },
        ) as serve,
    ):
        yield zone, serve


def publish(zone: Zone, record_set: dict[str, Any]) -> None:
    for r in record_set["records"]:
        host = NAME if r["host"] == "@" else f"{r['host']}.{NAME}"
        if r["type"] == "MX":
            zone.set(host, "MX", f"{r['priority']} {r['value']}.")
        else:
            zone.set(host, "TXT", r["value"])


def test_domain_from_the_api_alone_through_the_sdk(served: tuple[Zone, ServeProcess]) -> None:
    zone, server = served
    key = server.create_key("dns-org")
    h = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.base_url + "/v1", headers=h, timeout=30) as api:
        created = api.post("/domains", json={"name": NAME})
        assert created.status_code == 201, created.text
        domain_id = created.json()["id"]

        first = run_script(server, key, "domain-dns", domain_id)["returned"]
        assert first["object"] == "dns_record_set" and first["domain_id"] == domain_id
        assert {r["status"] for r in first["records"]} == {"not_found"} and first["all_verified"] is False
        mx = next(r for r in first["records"] if r["key"] == "mx")
        assert (mx["host"], mx["value"], mx["priority"]) == ("@", MX_HOST, 10)

        pending = run_script(server, key, "domain-verify", domain_id)["returned"]
        assert pending["status"] == "pending" and pending["all_verified"] is False
        assert pending["records"] == {"mx": False, "spf": False, "dkim": False, "dmarc": False}

        publish(zone, first)
        live = run_script(server, key, "domain-dns", domain_id)["returned"]
        assert live["all_verified"] is True and {r["status"] for r in live["records"]} == {"verified"}
        verified = run_script(server, key, "domain-verify", domain_id)["returned"]
        assert verified["status"] == "verified" and verified["all_verified"] is True
        assert verified["records"] == {"mx": True, "spf": True, "dkim": True, "dmarc": True}
        got = api.get(f"/domains/{domain_id}").json()
        assert got["status"] == "verified" and got["dkim_verified"] and got["verified_at"]

        # No operator step: the DNS-verified domain takes mailboxes that Cyrus serves.
        box = api.post("/mailboxes", json={"domain_id": domain_id, "address": "hello", "password": "CorrectHorse9"})
        assert box.status_code == 201, box.text
        imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=15)
        try:
            imap.login(f"hello@{NAME}", "CorrectHorse9")
        finally:
            imap.logout()

        updated = run_script(server, key, "domain-update", domain_id, box.json()["id"])["returned"]
        assert updated["object"] == "domain" and updated["catch_all_mailbox_id"] == box.json()["id"]
        assert api.get(f"/domains/{domain_id}").json()["catch_all_mailbox_id"] == box.json()["id"]
        cleared = run_script(server, key, "domain-update", domain_id, "-")["returned"]
        assert cleared["catch_all_mailbox_id"] is None
        bad = run_script(server, key, "domain-update", domain_id, "mbx_doesnotexist")
        assert (bad["class"], bad["status"], bad["type"]) == ("ValidationError", 422, "validation_error")
        assert bad["details"][0]["field"] == "catch_all_mailbox_id"

        # MX removed: the next verification degrades the domain.
        zone.remove(NAME, "MX")
        degraded = run_script(server, key, "domain-verify", domain_id)["returned"]
        assert degraded["status"] == "degraded" and degraded["records"]["mx"] is False
        assert api.get(f"/domains/{domain_id}").json()["status"] == "degraded"

        # A resolver that does not answer: a clear status, never a 5xx, and nothing changes.
        zone.mode = "silent"
        try:
            outage = run_script(server, key, "domain-dns", domain_id)["returned"]
            assert {r["status"] for r in outage["records"]} == {"dns_unavailable"}
            assert "did not answer" in outage["dns_error"]
            during = run_script(server, key, "domain-verify", domain_id)["returned"]
            assert during["outbound_error"] is True and during["status"] == "degraded"
        finally:
            zone.mode = "answer"
        zone.set(NAME, "MX", f"10 {MX_HOST}.")
        assert run_script(server, key, "domain-verify", domain_id)["returned"]["status"] == "verified"


def test_capabilities_and_not_supported_through_the_sdk(served: tuple[Zone, ServeProcess]) -> None:
    _, server = served
    key = server.create_key("caps-org", "domains:write", "messages:read")
    caps = run_script(server, key, "capabilities")["returned"]
    assert caps["scopes"] == ["domains:read", "domains:write", "messages:read"]
    assert caps["constraints"]["mailbox_ids"] is None and caps["capability_version"]
    assert {t["tier"] for t in caps["rate_limits"]} == {"read", "write", "verification"}

    bought = run_script(server, key, "domain-buy")
    for name in ("search", "register"):
        record = bought[name]
        assert (record["class"], record["status"], record["type"]) == ("ShipmailError", 501, "not_supported")
        assert "not supported" in record["message"] and record["request_id"].startswith("req_")
