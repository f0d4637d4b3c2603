"""Delivery-time Sieve on the real Cyrus: every new mailbox has ONE active script that sets
``$HasAttachment`` at LMTP delivery, so the JMAP ``hasAttachment`` filter sees LMTP mail; the
script is replaced atomically; ``MailServer.deliver`` speaks LMTP with per-recipient results."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
import pytest

from shipmail.delivery.script import ScriptOptions, build_script
from shipmail.mailserver.base import DeliveryRefused, MailServerUnavailable
from shipmail.mailserver.cyrus_server import CyrusMailServer
from tests.integration.conftest import ApiEnv, CyrusFixture, free_port
from tests.integration.corpus import corpus_bytes, ids_by_message_id, jmap, query_ids, unique

SIEVE_USING = ("urn:ietf:params:jmap:core", "https://cyrusimap.org/ns/jmap/sieve")

WITH_ATTACHMENTS = [
    "attachment_emails/attachment_pdf.eml",
    "attachment_emails/attachment_pdf_lf.eml",
    "attachment_emails/attachment_nonascii_filename.eml",
    "attachment_emails/attachment_only_email.eml",
    "attachment_emails/attachment_with_quoted_filename.eml",
    "attachment_emails/attachment_content_disposition.eml",
]
WITHOUT_ATTACHMENTS = [
    "plain_emails/basic_email.eml",
    "plain_emails/raw_email_simple.eml",
    "plain_emails/raw_email_reply.eml",
]


def new_mailbox(api: ApiEnv, domain: str, local: str | None = None) -> dict[str, Any]:
    dom = api.verified_domain(domain)
    address = local or f"m{secrets.token_hex(4)}"
    r = api.client.post(
        "/v1/mailboxes",
        json={"domain_id": dom["id"], "address": address, "generate_password": True},
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def scripts(api: ApiEnv, address: str) -> list[dict[str, Any]]:
    responses = jmap(api, address, [["SieveScript/get", {"ids": None}, "s"]], using=SIEVE_USING)
    assert responses[0][0] == "SieveScript/get", responses
    return responses[0][1]["list"]  # type: ignore[no-any-return]


def blob_text(api: ApiEnv, address: str, blob_id: str) -> str:
    access = api.cyrus.server.jmap_access(address)
    base = access.session_url.rsplit("/jmap/", 1)[0]
    r = httpx.get(
        f"{base}/jmap/download/{address}/{blob_id}/script.sieve",
        timeout=10,
        headers={"Authorization": access.authorization},
    )
    assert r.status_code == 200, r.text
    return r.text


def test_new_mailbox_has_one_active_delivery_script(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "sieve-one.example")
    listed = scripts(api, mbx["address"])
    assert len(listed) == 1
    assert listed[0]["isActive"] is True
    assert listed[0]["name"].startswith("shipmail-")
    # Every mailbox's script also holds the spam rule at the default threshold (5).
    expected = build_script(
        ScriptOptions(
            server=api.cyrus.server.delivery_sieve(),
            address=mbx["address"],
            spam_threshold=mbx["spam_filter_threshold"],
        )
    )
    assert blob_text(api, mbx["address"], listed[0]["blobId"]) == expected
    assert "jmapquery" in expected and '"$HasAttachment"' in expected


def test_has_attachment_filter_sees_lmtp_mail(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "sieve-attach.example")
    address = mbx["address"]
    with_ids: set[str] = set()
    without_ids: set[str] = set()
    for name in WITH_ATTACHMENTS + WITHOUT_ATTACHMENTS:
        raw, mid = unique(corpus_bytes(name))
        assert api.lmtp(address, raw) == {}
        (with_ids if name in WITH_ATTACHMENTS else without_ids).add(mid)
    by_mid = ids_by_message_id(api, address)
    assert set(by_mid) == with_ids | without_ids
    # Right after delivery: the keyword was set by the script during delivery.
    assert query_ids(api, address, {"hasAttachment": True}) == {by_mid[m] for m in with_ids}
    assert query_ids(api, address, {"hasAttachment": False}) == {by_mid[m] for m in without_ids}


def test_reinstall_replaces_the_script_and_a_rejected_one_changes_nothing(
    api: ApiEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipmail.delivery import service as sieve_sync

    mbx = new_mailbox(api, "sieve-replace.example")
    address = mbx["address"]
    services = api.client.app.state.services  # type: ignore[attr-defined]
    row = type("Row", (), {"id": mbx["id"], "address": address})()
    before = scripts(api, address)

    api.client.portal.call(sieve_sync.install, services, row)  # type: ignore[union-attr]
    after = scripts(api, address)
    assert len(after) == 1 and after[0]["isActive"] and after[0]["id"] != before[0]["id"]

    # A script the server refuses: 422 (invalidScript), the active one stays and still works.
    monkeypatch.setattr(sieve_sync, "build_script", lambda options: 'require "fileinto";\nfileinto :nosuchtag "x";\n')
    from shipmail.http.errors import ShipmailError

    with pytest.raises(ShipmailError) as refused:
        api.client.portal.call(sieve_sync.install, services, row)  # type: ignore[union-attr]
    assert refused.value.status_code == 422
    assert scripts(api, address) == after
    raw, mid = unique(corpus_bytes(WITH_ATTACHMENTS[0]))
    assert api.lmtp(address, raw) == {}
    assert query_ids(api, address, {"hasAttachment": True}) == {ids_by_message_id(api, address)[mid]}


def test_failed_script_install_removes_the_new_account(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipmail.delivery import service as sieve_sync
    from shipmail.http.errors import ServiceUnavailable

    async def broken(svc: Any, row: Any) -> None:
        raise ServiceUnavailable("sieve down")

    monkeypatch.setattr(sieve_sync, "install", broken)
    dom = api.verified_domain("sieve-fail.example")
    r = api.client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "gone", "generate_password": True}, headers=api.auth()
    )
    assert r.status_code == 503, r.text
    assert asyncio.run(api.cyrus.server.exists("gone@sieve-fail.example")) is False
    listed = api.client.get("/v1/mailboxes", headers=api.auth()).json()["data"]
    assert [m for m in listed if m["address"] == "gone@sieve-fail.example"] == []


async def test_deliver_reports_per_recipient_refusals(cyrus: CyrusFixture) -> None:
    server = CyrusMailServer.from_instance(cyrus.instance, timeout=2.0)
    try:
        await server.provision("one@deliver.example")
        await server.provision("two@deliver.example")
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"))
        await server.deliver(["one@deliver.example", "two@deliver.example"], raw, "sender@example.org")
        with pytest.raises(DeliveryRefused) as refused:
            await server.deliver(
                ["one@deliver.example", "nobody@deliver.example", "two@deliver.example"], unique(raw)[0], ""
            )
        assert set(refused.value.refused) == {"nobody@deliver.example"}
        code, _ = refused.value.refused["nobody@deliver.example"]
        assert 500 <= code < 600 and not refused.value.temporary
        assert refused.value.delivered == ["one@deliver.example", "two@deliver.example"]
        with pytest.raises(DeliveryRefused):
            await server.deliver(["nobody@deliver.example"], raw, "sender@example.org")
    finally:
        for address in ("one@deliver.example", "two@deliver.example"):
            await server.deprovision(address)
        await server.aclose()


async def test_deliver_to_a_dead_port_is_unavailable_fast(cyrus: CyrusFixture) -> None:
    inst = cyrus.instance
    server = CyrusMailServer(
        host=inst.connect_host,
        imap_port=inst.imap_port,
        jmap_port=inst.jmap_port,
        admin_user=inst.admin_user,
        admin_password=inst.admin_password,
        jwt_secret=inst.jwt_secret,
        timeout=1.0,
        lmtp_port=free_port(),
    )
    started = time.monotonic()
    with pytest.raises(MailServerUnavailable):
        await server.deliver(["x@deliver.example"], b"Subject: x\r\n\r\nx\r\n", "a@example.org")
    assert time.monotonic() - started < 2
    no_port = CyrusMailServer(
        host=inst.connect_host,
        imap_port=inst.imap_port,
        jmap_port=inst.jmap_port,
        admin_user=inst.admin_user,
        admin_password=inst.admin_password,
        jwt_secret=inst.jwt_secret,
    )
    with pytest.raises(MailServerUnavailable):
        await no_port.deliver(["x@deliver.example"], b"Subject: x\r\n\r\nx\r\n", "a@example.org")
    await server.aclose()
    await no_port.aclose()
