"""Domain DNS records, live checks and verification against a real authoritative DNS server on
127.0.0.1 (``tests.dnsserver``, the zone edited by each test), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipmail.config import Settings
from shipmail.domains import service as domains
from shipmail.domains.models import Domain
from tests.dnsserver import Zone
from tests.unit.conftest import MX_HOST, OUTBOUND_HOST, auth, make_key, run_db, verify_domain

pytestmark = pytest.mark.usefixtures("db_backend")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"ratelimit_verification": "1000/minute"}


def create(client: TestClient, key: str, name: str = "example.com") -> dict[str, Any]:
    r = client.post("/v1/domains", json={"name": name}, headers=auth(key))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def records(client: TestClient, key: str, domain_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/domains/{domain_id}/dns-records", headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def by_host(record_set: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["key"], r["host"]): r for r in record_set["records"]}


def publish(zone: Zone, name: str, record_set: dict[str, Any], *, skip: tuple[str, ...] = ()) -> None:
    """Publish every record of ``record_set`` (what a customer copies into their DNS)."""
    for r in record_set["records"]:
        if r["key"] in skip:
            continue
        host = name if r["host"] == "@" else f"{r['host']}.{name}"
        if r["type"] == "MX":
            zone.set(host, "MX", f"{r['priority']} {r['value']}.")
        else:
            zone.set(host, "TXT", r["value"])


def verify(client: TestClient, key: str, domain_id: str) -> dict[str, Any]:
    r = client.post(f"/v1/domains/{domain_id}/verification", headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_records_to_publish_then_pending_to_verified(client: TestClient, settings: Settings, zone: Zone) -> None:
    key = make_key(settings)
    dom = create(client, key)
    assert dom["catch_all_mailbox_id"] is None and dom["mx_verified"] is False
    first = records(client, key, dom["id"])
    assert first["object"] == "dns_record_set" and first["domain_name"] == "example.com"
    assert first["all_verified"] is False and first["dns_error"] is None
    rec = by_host(first)
    assert rec[("mx", "@")]["value"] == MX_HOST and rec[("mx", "@")]["priority"] == 10
    assert rec[("spf", "@")]["value"] == f"v=spf1 a:{OUTBOUND_HOST} ~all"
    assert rec[("dmarc", "_dmarc")]["value"] == "v=DMARC1; p=quarantine; adkim=r; aspf=r"
    rsa = rec[("dkim", "shipmail._domainkey")]
    assert rsa["value"].startswith("v=DKIM1; k=rsa; p=MIIBIjAN")  # a 2048-bit SubjectPublicKeyInfo
    assert len(rsa["value"]) > 255  # served as several TXT strings: the check joins them
    ed = rec[("dkim", "shipmail-ed25519._domainkey")]
    assert ed["value"].startswith("v=DKIM1; k=ed25519; p=") and ed["required"] is False
    assert rec[("ownership", "_shipmail")]["value"].startswith("shipmail-verification=")
    assert {r["status"] for r in first["records"]} == {"not_found"}
    assert all(r["found_values"] == [] and r["ttl"] >= 1 for r in first["records"])
    # The same values on every read (keys and token are made once).
    assert [r["value"] for r in records(client, key, dom["id"])["records"]] == [r["value"] for r in first["records"]]

    publish(zone, "example.com", first)
    live = records(client, key, dom["id"])
    assert live["all_verified"] is True and {r["status"] for r in live["records"]} == {"verified"}
    # getDomainDnsRecords is read-only: still pending, and mailboxes still refused.
    assert client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json()["status"] == "pending"
    refused = client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "a", "password": "CorrectHorse9"}, headers=auth(key)
    )
    assert refused.status_code == 422

    result = verify(client, key, dom["id"])
    assert result["all_verified"] is True and result["status"] == "verified" and result["ownership"] is True
    assert result["records"] == {"mx": True, "spf": True, "dkim": True, "dmarc": True}
    assert result["outbound_verified"] is True and result["outbound_error"] is False
    assert result["conflicting_mx"] == [] and result["suggested_spf"] is None
    assert result["dmarc_exact_match"] is True and result["dmarc_managed_externally"] is False
    got = client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json()
    assert got["status"] == "verified" and got["verified_at"] is not None
    assert got["mx_verified"] and got["spf_verified"] and got["dkim_verified"] and got["dmarc_verified"]
    assert got["outbound_verified"] is True
    created = client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "a", "password": "CorrectHorse9"}, headers=auth(key)
    )
    assert created.status_code == 201, created.text


def test_ownership_and_mx_make_verified_other_records_reported_apart(
    client: TestClient, settings: Settings, zone: Zone
) -> None:
    key = make_key(settings)
    dom = create(client, key)
    publish(zone, "example.com", records(client, key, dom["id"]), skip=("spf", "dkim", "dmarc"))
    result = verify(client, key, dom["id"])
    assert result["status"] == "verified" and result["all_verified"] is False
    assert result["records"] == {"mx": True, "spf": False, "dkim": False, "dmarc": False}
    assert result["suggested_spf"] == f"v=spf1 a:{OUTBOUND_HOST} ~all" and result["existing_spf"] is None
    got = client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json()
    assert got["status"] == "verified" and got["spf_verified"] is False and got["outbound_verified"] is False

    # Without the ownership record, MX alone does not verify a domain.
    other = create(client, key, "other.example")
    publish(zone, "other.example", records(client, key, other["id"]), skip=("ownership",))
    assert verify(client, key, other["id"])["status"] == "pending"


def test_mismatch_reports_found_values(client: TestClient, settings: Settings, zone: Zone) -> None:
    key = make_key(settings)
    dom = create(client, key)
    expected = records(client, key, dom["id"])
    publish(zone, "example.com", expected)
    zone.set("example.com", "MX", "10 mx.elsewhere.example.", "20 MX2.Elsewhere.Example.")
    zone.set("example.com", "TXT", "v=spf1 include:_spf.google.com ~all", "google-site-verification=abc")
    zone.set("shipmail._domainkey.example.com", "TXT", "v=DKIM1; k=rsa; p=AAAAwrongkey")
    zone.set("_shipmail.example.com", "TXT", "shipmail-verification=not-the-token")
    zone.set("_dmarc.example.com", "TXT", "v=DMARC1; rua=mailto:x@example.com")  # no p=: invalid
    live = by_host(records(client, key, dom["id"]))
    assert live[("mx", "@")]["status"] == "mismatch"
    assert live[("mx", "@")]["found_values"] == ["10 mx.elsewhere.example", "20 mx2.elsewhere.example"]
    assert live[("spf", "@")]["status"] == "mismatch"
    assert live[("spf", "@")]["found_values"] == ["v=spf1 include:_spf.google.com ~all"]
    # The suggestion keeps the customer's mechanisms and adds ours before "all".
    assert live[("spf", "@")]["value"] == f"v=spf1 include:_spf.google.com a:{OUTBOUND_HOST} ~all"
    assert live[("dkim", "shipmail._domainkey")]["status"] == "mismatch"
    assert live[("dkim", "shipmail._domainkey")]["found_values"] == ["v=DKIM1; k=rsa; p=AAAAwrongkey"]
    assert live[("ownership", "_shipmail")]["status"] == "mismatch"
    assert live[("dmarc", "_dmarc")]["status"] == "mismatch"
    result = verify(client, key, dom["id"])
    assert result["status"] == "pending" and result["all_verified"] is False
    assert result["conflicting_mx"] == ["mx.elsewhere.example", "mx2.elsewhere.example"]
    assert result["existing_spf"] == "v=spf1 include:_spf.google.com ~all"
    assert result["dmarc_valid"] is False and result["dmarc_record_value"] == "v=DMARC1; rua=mailto:x@example.com"


def test_external_dmarc_is_respected(client: TestClient, settings: Settings, zone: Zone) -> None:
    key = make_key(settings)
    dom = create(client, key)
    publish(zone, "example.com", records(client, key, dom["id"]))
    zone.set("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; rua=mailto:dmarc@example.com")
    live = by_host(records(client, key, dom["id"]))
    assert live[("dmarc", "_dmarc")]["status"] == "verified"
    assert live[("dmarc", "_dmarc")]["value"] == "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"
    result = verify(client, key, dom["id"])
    assert result["dmarc_valid"] is True and result["dmarc_exact_match"] is False
    assert result["dmarc_managed_externally"] is True and result["records"]["dmarc"] is True
    got = client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json()
    assert got["dmarc_managed_externally"] is True and got["dmarc_verified"] is True


def test_verified_degrades_when_mx_removed_and_recovers(client: TestClient, settings: Settings, zone: Zone) -> None:
    key = make_key(settings)
    dom = create(client, key)
    publish(zone, "example.com", records(client, key, dom["id"]))
    assert verify(client, key, dom["id"])["status"] == "verified"
    zone.remove("example.com", "MX")
    live = by_host(records(client, key, dom["id"]))
    assert live[("mx", "@")]["status"] == "not_found"  # the apex still has TXT records: NOERROR, no MX
    result = verify(client, key, dom["id"])
    assert result["status"] == "degraded" and result["records"]["mx"] is False
    got = client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json()
    assert got["status"] == "degraded" and got["mx_verified"] is False and got["verified_at"] is not None
    zone.set("example.com", "MX", f"10 {MX_HOST}.")
    assert verify(client, key, dom["id"])["status"] == "verified"


@pytest.mark.parametrize("mode", ["silent", "servfail"])
def test_dns_outage_is_a_status_not_an_error(client: TestClient, settings: Settings, zone: Zone, mode: str) -> None:
    key = make_key(settings)
    dom = create(client, key)
    publish(zone, "example.com", records(client, key, dom["id"]))
    assert verify(client, key, dom["id"])["status"] == "verified"
    zone.mode = mode
    began = time.monotonic()
    live = records(client, key, dom["id"])
    assert time.monotonic() - began < 10 * settings.dns_timeout  # bounded, lookups run concurrently
    assert {r["status"] for r in live["records"]} == {"dns_unavailable"}
    assert live["all_verified"] is False
    assert settings.dns_resolver is not None and settings.dns_resolver in (live["dns_error"] or "")
    result = verify(client, key, dom["id"])
    # Nothing is known to have changed: the domain stays verified, the result says why.
    assert result["status"] == "verified" and result["outbound_error"] is True and result["dns_error"]
    got = client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json()
    assert got["status"] == "verified" and got["mx_verified"] is True
    # A pending domain stays pending too.
    other = create(client, key, "other.example")
    assert verify(client, key, other["id"])["status"] == "pending"


def test_unknown_and_foreign_domains_are_404(client: TestClient, settings: Settings) -> None:
    a, b = make_key(settings, org="a"), make_key(settings, org="b")
    dom = create(client, a)
    for path in (f"/v1/domains/{dom['id']}/dns-records", "/v1/domains/dom_nope/dns-records"):
        assert client.get(path, headers=auth(b)).status_code == 404
    for path in (f"/v1/domains/{dom['id']}/verification", "/v1/domains/dom_nope/verification"):
        r = client.post(path, headers=auth(b))
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


def test_scopes(client: TestClient, settings: Settings) -> None:
    owner = make_key(settings)
    dom = create(client, owner)
    reader = make_key(settings, scopes=["domains:read"])
    assert client.get(f"/v1/domains/{dom['id']}/dns-records", headers=auth(reader)).status_code == 200
    assert client.post(f"/v1/domains/{dom['id']}/verification", headers=auth(reader)).status_code == 403
    mailboxes_only = make_key(settings, scopes=["mailboxes:write"])
    assert client.get(f"/v1/domains/{dom['id']}/dns-records", headers=auth(mailboxes_only)).status_code == 403


def test_dkim_private_keys_are_encrypted_at_rest(client: TestClient, settings: Settings) -> None:
    from shipmail.domains import crypto, dkim

    key = make_key(settings)
    dom = create(client, key)

    async def read(s: Any) -> Domain:
        return await domains.get(s, (await s.get(Domain, dom["id"])).organization_id, dom["id"])

    row: Domain = run_db(settings, read)
    assert row.dkim_private_key and row.dkim_ed25519_private_key
    for stored in (row.dkim_private_key, row.dkim_ed25519_private_key):
        assert "PRIVATE KEY" not in stored and stored.startswith("v1.")
        with pytest.raises(crypto.UndecryptableSecret):
            crypto.decrypt(b"another-secret", stored, bound_to=row.id)
        with pytest.raises(crypto.UndecryptableSecret):
            crypto.decrypt(settings.secret_key, stored, bound_to="dom_other")
    rsa_pem, ed_pem = dkim.private_keys(row, settings.secret_key)
    assert rsa_pem is not None and rsa_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert ed_pem is not None
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    loaded = load_pem_private_key(rsa_pem, password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey) and loaded.key_size == 2048


def test_domains_older_than_dkim_get_keys_on_first_use(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    dom = create(client, key)

    async def strip(s: Any) -> None:
        row = await s.get(Domain, dom["id"])
        row.dkim_private_key = row.dkim_public_key = None
        row.dkim_ed25519_private_key = row.dkim_ed25519_public_key = None
        s.add(row)
        await s.commit()

    run_db(settings, strip)
    rec = by_host(records(client, key, dom["id"]))
    assert rec[("dkim", "shipmail._domainkey")]["value"].startswith("v=DKIM1; k=rsa; p=")
    again = by_host(records(client, key, dom["id"]))
    assert again[("dkim", "shipmail._domainkey")]["value"] == rec[("dkim", "shipmail._domainkey")]["value"]


def test_background_recheck_degrades_with_a_bounded_batch(client: TestClient, settings: Settings, zone: Zone) -> None:
    key = make_key(settings)
    doms = [create(client, key, f"d{i}.example") for i in range(3)]
    for dom in doms:
        publish(zone, dom["name"], records(client, key, dom["id"]))
        assert verify(client, key, dom["id"])["status"] == "verified"
    operator = create(client, key, "operator.example")
    verify_domain(settings, "operator.example")
    for dom in doms:
        zone.remove(dom["name"], "MX")

    # Everything was checked just now (the operator's domain never): only that one is due.
    assert run_db(settings, lambda s: domains.recheck_due(s, settings)) == 1
    assert client.get(f"/v1/domains/{operator['id']}", headers=auth(key)).json()["status"] == "verified"

    later = settings.model_copy(update={"domain_recheck_seconds": 1})
    time.sleep(1.2)
    assert run_db(settings, lambda s: domains.recheck_due(s, later, limit=2)) == 2
    statuses = [client.get(f"/v1/domains/{d['id']}", headers=auth(key)).json()["status"] for d in doms]
    assert statuses.count("degraded") == 2 and statuses.count("verified") == 1
    # The operator's override is never degraded by the re-check.
    assert run_db(settings, lambda s: domains.recheck_due(s, later, limit=10)) >= 2
    statuses = [client.get(f"/v1/domains/{d['id']}", headers=auth(key)).json()["status"] for d in doms]
    assert statuses == ["degraded"] * 3
    assert client.get(f"/v1/domains/{operator['id']}", headers=auth(key)).json()["status"] == "verified"


class TestVerificationTier:
    """The default verification tier: 1 check per minute per domain (and operation)."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {}

    def test_one_per_minute_per_domain(self, client: TestClient, settings: Settings) -> None:
        key, other_key = make_key(settings), make_key(settings)
        one, two = create(client, key), create(client, key, "two.example")
        first = client.post(f"/v1/domains/{one['id']}/verification", headers=auth(key))
        assert first.status_code == 200 and first.headers["X-RateLimit-Limit"] == "1"
        again = client.post(f"/v1/domains/{one['id']}/verification", headers=auth(other_key))
        assert again.status_code == 429 and again.json()["error"]["type"] == "rate_limit_error"
        assert int(again.headers["Retry-After"]) >= 1
        # Another domain, and the read-only check of the same domain, have buckets of their own.
        assert client.post(f"/v1/domains/{two['id']}/verification", headers=auth(key)).status_code == 200
        assert client.get(f"/v1/domains/{one['id']}/dns-records", headers=auth(key)).status_code == 200
        assert client.get(f"/v1/domains/{one['id']}/dns-records", headers=auth(key)).status_code == 429
        # Another organisation cannot spend this domain's checks (it gets 404 from its own bucket).
        stranger = make_key(settings, org="stranger")
        assert client.post(f"/v1/domains/{two['id']}/verification", headers=auth(stranger)).status_code == 404


def test_search_and_register_are_not_supported(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    for path, body in (
        ("/v1/domains/search", {"keyword": "shipmail"}),
        ("/v1/domains/register", {"name": "x.example", "contact": {}}),
        ("/v1/domains/register", None),
    ):
        r = client.post(path, json=body, headers=auth(key))
        assert r.status_code == 501, r.text
        error = r.json()["error"]
        assert error["type"] == "not_supported" and "not supported" in error["message"]
        assert error["request_id"] == r.headers["X-Request-Id"]
    assert client.get("/v1/domains", headers=auth(key)).json()["data"] == []
    assert client.post("/v1/domains/search", json={}).status_code == 401


@pytest.mark.parametrize("settings_overrides", [{"ratelimit_verification": "1000/minute", "jobs_worker": False}])
def test_periodic_recheck_job_degrades_and_reschedules(client: TestClient, settings: Settings, zone: Zone) -> None:
    """The app's worker is off here: the test's worker is the one that claims the job."""
    import asyncio
    from datetime import timedelta

    from shipmail import jobs, utc
    from shipmail.db.engine import Database
    from shipmail.runtime import Services
    from shipmail.tasks import HANDLERS

    key = make_key(settings)
    dom = create(client, key)
    publish(zone, "example.com", records(client, key, dom["id"]))
    assert verify(client, key, dom["id"])["status"] == "verified"
    zone.remove("example.com", "MX")
    # Run as a worker would, with a 1 s re-check interval (the app's own worker waits a minute).
    later = settings.model_copy(update={"domain_recheck_seconds": 1})

    async def go() -> tuple[int, jobs.Job | None, jobs.Job | None]:
        db = Database(settings.database_url)
        services = Services(settings=later, db=db, mail=None, jmap=None, cursors=None)  # type: ignore[arg-type]
        try:
            async with db.session() as s:
                job = await jobs.find(s, domains.RECHECK_KEY)
                assert job is not None and job.kind == "domains.recheck" and job.state == jobs.QUEUED
                assert job.run_at > utc.now() + timedelta(seconds=30)  # created by the create/verify above
                job.run_at = utc.now()
                s.add(job)
                await s.commit()
            await asyncio.sleep(1.1)
            ran = await jobs.Worker(services, HANDLERS).run_due()
            async with db.session() as s:
                after = await jobs.find(s, domains.RECHECK_KEY)
            # Creating another domain does not add a second re-check job.
            async with db.session() as s:
                await domains.ensure_recheck_scheduled(s, later)
                await s.commit()
                again = await jobs.find(s, domains.RECHECK_KEY)
            return ran, after, again
        finally:
            await db.dispose()

    ran, after, again = asyncio.run(go())
    assert ran == 1
    assert after is not None and after.state == jobs.QUEUED and after.last_error == "periodic: 1 domain(s) checked"
    assert again is not None and again.id == after.id
    assert client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json()["status"] == "degraded"
