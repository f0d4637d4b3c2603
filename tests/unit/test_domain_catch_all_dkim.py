"""Catch-all (``PATCH /v1/domains/{id}`` and :func:`resolve_catch_all`), DKIM signing
(:func:`signer_for`, verified by dkimpy against the key the test DNS server publishes) and
``GET /v1/capabilities``, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dkim as dkimpy
import dns.resolver
import pytest
from starlette.testclient import TestClient

from shipmail.config import Settings
from shipmail.domains import dkim
from shipmail.domains import service as domains
from shipmail.messages import outbound
from tests.dnsserver import Zone
from tests.unit.conftest import auth, make_key, run_db, verify_domain

pytestmark = pytest.mark.usefixtures("db_backend")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"ratelimit_verification": "7/hour"}


MESSAGE = (
    b"From: Hello <hello@example.com>\r\n"
    b"To: someone@example.org\r\n"
    b"Subject: Signed\r\n"
    b"Date: Sun, 06 Dec 2026 07:00:00 +0000\r\n"
    b"Message-ID: <signed-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"The body   of the message.\r\n"
)


def mailbox(client: TestClient, key: str, domain_id: str, local: str) -> dict[str, Any]:
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": domain_id, "address": local, "password": "CorrectHorse9"},
        headers=auth(key),
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def patch(client: TestClient, key: str, domain_id: str, body: Any) -> Any:
    return client.patch(f"/v1/domains/{domain_id}", json=body, headers=auth(key))


def resolve(settings: Settings, address: str) -> str | None:
    return run_db(settings, lambda s: domains.resolve_catch_all(s, address))  # type: ignore[no-any-return]


def test_catch_all_set_shown_resolved_and_turned_off(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    dom = client.post("/v1/domains", json={"name": "example.com"}, headers=auth(key)).json()
    verify_domain(settings, "example.com")
    hello = mailbox(client, key, dom["id"], "hello")
    other = mailbox(client, key, dom["id"], "other")
    assert resolve(settings, "nobody@example.com") is None  # off by default

    r = patch(client, key, dom["id"], {"catch_all_mailbox_id": hello["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["catch_all_mailbox_id"] == hello["id"] and r.json()["object"] == "domain"
    assert client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json()["catch_all_mailbox_id"] == hello["id"]
    listed = client.get("/v1/domains", headers=auth(key)).json()["data"][0]
    assert listed["catch_all_mailbox_id"] == hello["id"]

    assert resolve(settings, "nobody@example.com") == "hello@example.com"
    assert resolve(settings, "NoBody@EXAMPLE.com.") == "hello@example.com"
    # Known addresses are not "unknown": they get their own mail.
    assert resolve(settings, "other@example.com") is None
    assert resolve(settings, "Other@example.com") is None
    assert resolve(settings, "nobody@elsewhere.example") is None
    assert resolve(settings, "not an address") is None

    r = patch(client, key, dom["id"], {"catch_all_mailbox_id": other["id"]})
    assert r.status_code == 200 and resolve(settings, "x@example.com") == "other@example.com"

    r = patch(client, key, dom["id"], {"catch_all_mailbox_id": None})
    assert r.status_code == 200 and r.json()["catch_all_mailbox_id"] is None
    assert resolve(settings, "nobody@example.com") is None


def test_catch_all_validation(client: TestClient, settings: Settings) -> None:
    key, stranger = make_key(settings), make_key(settings, org="stranger")
    dom = client.post("/v1/domains", json={"name": "example.com"}, headers=auth(key)).json()
    second = client.post("/v1/domains", json={"name": "second.example"}, headers=auth(key)).json()
    theirs = client.post("/v1/domains", json={"name": "theirs.example"}, headers=auth(stranger)).json()
    for name in ("example.com", "second.example", "theirs.example"):
        verify_domain(settings, name)
    mailbox(client, key, dom["id"], "hello")
    elsewhere = mailbox(client, key, second["id"], "hello")
    foreign = mailbox(client, stranger, theirs["id"], "hello")

    for bad in (elsewhere["id"], foreign["id"], "mbx_doesnotexist"):
        r = patch(client, key, dom["id"], {"catch_all_mailbox_id": bad})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"][0]["field"] == "catch_all_mailbox_id"
    for body in ({}, {"catch_all_mailbox_id": 5}, {"catch_all_mailbox_id": None, "extra": 1}):
        assert patch(client, key, dom["id"], body).status_code == 422
    # Another organisation's domain, or no such domain: 404.
    assert patch(client, stranger, dom["id"], {"catch_all_mailbox_id": None}).status_code == 404
    assert patch(client, key, "dom_nope", {"catch_all_mailbox_id": None}).status_code == 404
    assert (
        patch(
            client, make_key(settings, scopes=["domains:read"]), dom["id"], {"catch_all_mailbox_id": None}
        ).status_code
        == 403
    )
    assert client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json()["catch_all_mailbox_id"] is None


def test_deleting_the_catch_all_mailbox_turns_catch_all_off(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    dom = client.post("/v1/domains", json={"name": "example.com"}, headers=auth(key)).json()
    verify_domain(settings, "example.com")
    hello = mailbox(client, key, dom["id"], "hello")
    assert patch(client, key, dom["id"], {"catch_all_mailbox_id": hello["id"]}).status_code == 200
    assert client.delete(f"/v1/mailboxes/{hello['id']}", headers=auth(key)).status_code == 204
    assert client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json()["catch_all_mailbox_id"] is None
    assert resolve(settings, "nobody@example.com") is None


def zone_txt(zone_address: str) -> Callable[..., bytes | None]:
    """dkimpy's ``dnsfunc``: TXT lookups asked of the test DNS server (strings joined)."""
    host, port = zone_address.split(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)

    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode(), "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    return get_txt


def test_signed_mail_verifies_against_the_published_key(
    client: TestClient, settings: Settings, zone: Zone, dns_served: tuple[Zone, str]
) -> None:
    key = make_key(settings)
    dom = client.post("/v1/domains", json={"name": "example.com"}, headers=auth(key)).json()
    records = client.get(f"/v1/domains/{dom['id']}/dns-records", headers=auth(key)).json()["records"]
    for r in records:
        host = "example.com" if r["host"] == "@" else f"{r['host']}.example.com"
        if (r["type"] == "TXT" and r["key"] != "dkim") or r["host"] == "shipmail._domainkey":
            zone.set(host, "TXT", r["value"])  # the Ed25519 key is not published yet
        elif r["type"] == "MX":
            zone.set(host, "MX", f"{r['priority']} {r['value']}.")
    assert client.post(f"/v1/domains/{dom['id']}/verification", headers=auth(key)).status_code == 200
    dnsfunc = zone_txt(dns_served[1])

    signer = run_db(settings, lambda s: dkim.signer_for(s, "Example.COM", settings=settings))
    assert signer is not None
    signed = signer(MESSAGE)
    assert signed.endswith(MESSAGE) and signed.count(b"DKIM-Signature:") == 1
    header = signed[: len(signed) - len(MESSAGE)]
    assert b"a=rsa-sha256" in header and b"c=relaxed/relaxed" in header and b"s=shipmail" in header
    for field in (b"from", b"to", b"subject", b"date", b"message-id"):
        assert field in header.split(b"h=")[1].split(b";")[0]
    assert dkimpy.verify(signed, dnsfunc=dnsfunc) is True
    # Relaxed/relaxed: whitespace changes in transit still verify; a changed body does not.
    assert dkimpy.verify(signed.replace(b"The body   of", b"The body of"), dnsfunc=dnsfunc) is True
    assert dkimpy.verify(signed.replace(b"The body", b"The bodY"), dnsfunc=dnsfunc) is False
    assert dkimpy.verify(signed.replace(b"Subject: Signed", b"Subject: Changed"), dnsfunc=dnsfunc) is False
    # The outgoing path signs what leaves from one of our domains, and nothing else.
    finalized = run_db(settings, lambda s: outbound._finalize(s, settings, MESSAGE, "example.com"))
    assert finalized != MESSAGE and dkimpy.verify(finalized, dnsfunc=dnsfunc) is True
    assert run_db(settings, lambda s: outbound._finalize(s, settings, MESSAGE, "elsewhere.example")) == MESSAGE

    # Once the Ed25519 record is published and seen, mail carries both signatures.
    ed = next(r for r in records if r["host"] == "shipmail-ed25519._domainkey")
    zone.set("shipmail-ed25519._domainkey.example.com", "TXT", ed["value"])
    assert client.post(f"/v1/domains/{dom['id']}/verification", headers=auth(key)).status_code == 200
    signer = run_db(settings, lambda s: dkim.signer_for(s, "example.com", settings=settings))
    assert signer is not None
    both = signer(MESSAGE)
    assert both.count(b"DKIM-Signature:") == 2 and b"a=ed25519-sha256" in both
    checker = dkimpy.DKIM(both)
    assert checker.verify(0, dnsfunc=dnsfunc) and checker.verify(1, dnsfunc=dnsfunc)
    tampered = dkimpy.DKIM(both.replace(b"The body", b"A body"))
    for index in (0, 1):
        with pytest.raises(dkimpy.ValidationError, match="body hash mismatch"):
            tampered.verify(index, dnsfunc=dnsfunc)

    # No domain, no signer.
    assert run_db(settings, lambda s: dkim.signer_for(s, "unknown.example", settings=settings)) is None


def test_capabilities(client: TestClient, settings: Settings) -> None:
    full = client.get("/v1/capabilities", headers=auth(make_key(settings)))
    assert full.status_code == 200, full.text
    body = full.json()
    assert body["capability_version"] == "1.0.0" and body["api_version"] == "v1"
    assert "*" not in body["scopes"] and "domains:read" in body["scopes"] and "mailbox_rules:write" in body["scopes"]
    assert body["scopes"] == sorted(body["scopes"])
    assert body["constraints"]["mailbox_ids"] is None and body["constraints"]["domain_ids"] is None
    assert body["allowed_mcp_tools"] == [] and body["undo_hold_seconds"] == 0
    assert body["transactional_recipient_budget"]["window_hours"] == 24
    tiers = {t["tier"]: t for t in body["rate_limits"]}
    assert tiers["read"] == {"tier": "read", "limit": 1000, "window_seconds": 60, "per": "api_key"}
    assert tiers["write"]["limit"] == 200
    assert tiers["verification"] == {"tier": "verification", "limit": 7, "window_seconds": 3600, "per": "domain"}
    assert full.headers["X-RateLimit-Limit"] == "1000"

    narrow = client.get("/v1/capabilities", headers=auth(make_key(settings, scopes=["domains:write", "messages:read"])))
    assert narrow.status_code == 200
    assert narrow.json()["scopes"] == ["domains:read", "domains:write", "messages:read"]
    assert client.get("/v1/capabilities").status_code == 401
    assert client.get("/v1/capabilities", headers=auth("sm_live_" + "x" * 40)).status_code == 401
