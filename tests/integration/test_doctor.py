"""``shipmail doctor`` against the real Cyrus: every kind of difference between the database and the
mail server is made for real (an account made behind the API's back, an account deleted behind its
back, a script replaced, system folders destroyed, a create and a delete that fail half-way with
their clean-up failing too, as when the process dies), reported one line each, and ``--repair``
brings the count to 0; the addresses they blocked can be created again."""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shipmail.delivery import service as delivery
from shipmail.delivery.script import ScriptOptions, build_script
from shipmail.doctor import service as doctor
from shipmail.doctor.service import Kind
from shipmail.mailboxes import service as mailboxes_service
from shipmail.mailserver.base import MailServerUnavailable
from shipmail.runtime import Services
from tests.integration.conftest import ApiEnv
from tests.integration.corpus import corpus_bytes, jmap, unique

T = TypeVar("T")

SIEVE_USING = ("urn:ietf:params:jmap:core", "https://cyrusimap.org/ns/jmap/sieve")


def services(api: ApiEnv) -> Services:
    return api.client.app.state.services  # type: ignore[attr-defined,no-any-return]


def run(api: ApiEnv, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
    """``await fn(*args, **kw)`` on the app's event loop."""
    assert api.client.portal is not None

    async def go() -> T:
        return await fn(*args, **kw)

    return api.client.portal.call(go)


def create(api: ApiEnv, domain_id: object, local: str) -> Any:
    return api.client.post(
        "/v1/mailboxes", json={"domain_id": domain_id, "address": local, "generate_password": True}, headers=api.auth()
    )


DOMAIN = "doctor.example"


def ours(api: ApiEnv) -> list[doctor.Difference]:
    """The differences :func:`doctor.check` finds for this test's domain (the session's Cyrus
    instance also holds the accounts of other tests, each with a database of its own)."""
    report = run(api, doctor.check, services(api))
    return [d for d in report.differences if d.address.endswith("@" + DOMAIN)]


def found(differences: list[doctor.Difference]) -> set[tuple[str, str, str | None]]:
    return {(d.kind.value, d.address, d.role) for d in differences}


def admin_delete_folder(api: ApiEnv, name: str) -> None:
    """Delete the Cyrus folder ``name`` (``user/x/Sent@dom``) as the admin, behind the API's back."""
    inst = api.cyrus.instance
    conn = imaplib.IMAP4(inst.connect_host, inst.imap_port, timeout=15)
    try:
        conn.login(inst.admin_user, inst.admin_password)
        assert conn.xatom("SETACL", f'"{name}"', inst.admin_user, "x")[0] == "OK"
        assert conn.delete(f'"{name}"')[0] == "OK"
    finally:
        conn.logout()


def active_script(api: ApiEnv, address: str) -> str:
    (script,) = [s for s in jmap(api, address, [["SieveScript/get", {"ids": None}, "s"]], SIEVE_USING)[0][1]["list"]]
    assert script["isActive"]

    async def text() -> str:
        response = await services(api).jmap.open_blob(address, script["blobId"], content_type="text/plain")
        try:
            return (await response.aread()).decode()
        finally:
            await response.aclose()

    return run(api, text)


def test_doctor_finds_and_repairs_every_kind_of_difference(
    api: ApiEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    svc = services(api)
    orphans = tmp_path / "orphans"
    dom = api.verified_domain(DOMAIN)
    assert ours(api) == []

    # An account no row owns (made through the MailServer, as a crash between provisioning and the
    # row's commit in an older version left them), one empty and one holding mail.
    run(api, svc.mail.provision, "stray@doctor.example")
    run(api, svc.mail.provision, "keeper@doctor.example")
    raw, message_id = unique(corpus_bytes("plain_emails/basic_email.eml"))
    # Straight to Cyrus: the inbound gateway refuses an address no mailbox has (550 5.1.1).
    with smtplib.LMTP(str(api.cyrus.instance.lmtp_socket), timeout=15) as direct:
        assert direct.sendmail("sender@example.org", ["keeper@doctor.example"], raw) == {}
    blocked = create(api, dom["id"], "stray")
    assert blocked.status_code == 409 and "no mailbox owns" in blocked.json()["error"]["message"]

    # A row whose account was deleted behind the API's back.
    lost = create(api, dom["id"], "lost").json()
    run(api, svc.mail.deprovision, lost["address"])

    # A mailbox whose script was replaced behind its back, one whose Sent folder was destroyed and
    # whose Junk folder was destroyed and made again (its stored id is stale).
    edited = create(api, dom["id"], "edited").json()
    row_like = type("Row", (), {"id": edited["id"], "address": edited["address"]})()
    run(api, delivery.activate, svc, row_like, "keep;\n")
    silent = create(api, dom["id"], "silent").json()
    off = jmap(api, silent["address"], [["SieveScript/set", {"onSuccessActivateScript": None}, "s"]], SIEVE_USING)
    assert off[0][0] == "SieveScript/set", off
    foldless = create(api, dom["id"], "foldless").json()
    admin_delete_folder(api, "user/foldless/Sent@doctor.example")
    admin_delete_folder(api, "user/foldless/Junk@doctor.example")
    made = jmap(
        api,
        foldless["address"],
        [["Mailbox/set", {"create": {"j": {"name": "Junk", "role": "junk", "parentId": None}}}, "m"]],
    )
    assert "j" in made[0][1]["created"], made

    # A create that fails after provisioning, and whose clean-up fails too (the process died): the
    # row stays "provisioning" with its account. A delete that fails the same way: "deleting".
    async def died(*_args: Any) -> Any:
        raise MailServerUnavailable("the process died here")

    doomed = create(api, dom["id"], "doomed").json()
    with monkeypatch.context() as patch:
        patch.setattr(mailboxes_service, "fetch_system_folders", died)
        patch.setattr(svc.mail, "deprovision", died)
        assert create(api, dom["id"], "halfmade").status_code == 503
        assert api.client.delete(f"/v1/mailboxes/{doomed['id']}", headers=api.auth()).status_code == 503
    assert run(api, svc.mail.exists, "halfmade@doctor.example")
    again = create(api, dom["id"], "halfmade")
    assert again.status_code == 409
    assert (
        again.json()["error"]["message"] == "The mailbox halfmade@doctor.example is being created; retry in a moment."
    )
    assert api.client.get(f"/v1/mailboxes/{doomed['id']}", headers=api.auth()).status_code == 409
    listed = {m["address"] for m in api.client.get("/v1/mailboxes", headers=api.auth()).json()["data"]}
    assert listed == {f"{local}@doctor.example" for local in ("lost", "edited", "silent", "foldless")}

    report = ours(api)
    assert found(report) == {
        ("account-without-row", "keeper@doctor.example", None),
        ("account-without-row", "stray@doctor.example", None),
        ("row-without-account", "lost@doctor.example", None),
        ("stuck-provisioning", "halfmade@doctor.example", None),
        ("stuck-deleting", "doomed@doctor.example", None),
        ("script-differs", "edited@doctor.example", None),
        ("script-missing", "silent@doctor.example", None),
        ("folder-missing", "foldless@doctor.example", "sent"),
        ("folder-id-stale", "foldless@doctor.example", "junk"),
    }, "\n".join(map(str, report))
    keeper = next(d for d in report if d.address == "keeper@doctor.example")
    assert keeper.messages == 1 and "it holds 1 message(s)" in str(keeper)
    assert doctor.Report(report).summary().startswith("9 difference(s)")
    assert all("\n" not in str(d) for d in report)

    # --repair: everything but the account holding mail, which is kept without --purge-orphans.
    actions = run(api, doctor.repair, svc, report, purge_orphans=False, orphans_dir=orphans)
    by_address = {(a.difference.address, a.difference.kind): a for a in actions}
    assert by_address[("keeper@doctor.example", Kind.ACCOUNT_WITHOUT_ROW)].result == "skipped"
    assert {a.result for a in actions if a.difference.address != "keeper@doctor.example"} == {"repaired"}, "\n".join(
        map(str, actions)
    )
    assert found(ours(api)) == {("account-without-row", "keeper@doctor.example", None)}
    assert not orphans.exists()

    # --repair --purge-orphans: its mail is saved first, then the account goes.
    left = ours(api)
    (action,) = run(api, doctor.repair, svc, left, purge_orphans=True, orphans_dir=orphans)
    assert action.result == "repaired", str(action)
    (dump,) = orphans.iterdir()
    assert dump.name.startswith("keeper@doctor.example-") and dump.stat().st_mode & 0o777 == 0o700
    saved = (dump / "000001.eml").read_bytes()
    assert message_id.encode() in saved and saved.replace(b"\r\n", b"\n").endswith(
        raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    )
    assert "000001.eml" in (dump / "MANIFEST.tsv").read_text() and "Inbox" in (dump / "MANIFEST.tsv").read_text()
    assert ours(api) == []

    # Repaired for real: the blocked addresses can be created, the mailboxes work.
    for local in ("stray", "halfmade", "doomed", "keeper"):
        r = create(api, dom["id"], local)
        assert r.status_code == 201, r.text
    assert api.client.get(f"/v1/mailboxes/{lost['id']}/folders", headers=api.auth()).status_code == 200
    assert api.client.get(f"/v1/mailboxes/{lost['id']}/inbox/messages", headers=api.auth()).status_code == 200
    expected = build_script(
        ScriptOptions(server=svc.mail.delivery_sieve(), address=edited["address"], spam_threshold=5)
    )
    assert active_script(api, edited["address"]) == expected
    expected = build_script(
        ScriptOptions(server=svc.mail.delivery_sieve(), address=silent["address"], spam_threshold=5)
    )
    assert active_script(api, silent["address"]) == expected
    roles = {
        f["role"] for f in api.client.get(f"/v1/mailboxes/{foldless['id']}/folders", headers=api.auth()).json()["data"]
    }
    assert {"inbox", "drafts", "sent", "trash", "junk", "archive"} <= roles
    assert ours(api) == []
