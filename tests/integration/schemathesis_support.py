"""Seed and app for ``test_schemathesis_cyrus.py``: the API on a fresh database wired to the session's
Cyrus, with a verified domain, mailboxes, folders, real mail delivered over LMTP, inbox rules and an
auto-reply.

Everything is created once per module, through the API (and LMTP for the mail), as a client would;
the ids the generated cases use (mailbox, folders ``fld_...``, messages ``eml_...``, threads
``thr_...``, attachment blob ids, cursors) are read back from the API's answers. Objects that a
destructive operation may remove are separate throwaways: a domain, a mailbox, two folders and two
messages already in Trash.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from tests.integration.conftest import ApiEnv, CyrusFixture
from tests.integration.corpus import corpus_bytes, jmap, unique

#: Corpus messages delivered to the seeded mailbox (the first ones carry attachments).
CORPUS_MESSAGES = [
    "attachment_emails/attachment_pdf.eml",
    "attachment_emails/attachment_nonascii_filename.eml",
    "attachment_emails/attachment_with_encoded_name.eml",
    "mime_emails/raw_email_with_nested_attachment.eml",
    "multi_charset/japanese_attachment.eml",
    "plain_emails/basic_email.eml",
    "multi_charset/japanese.eml",
    "error_emails/bad_date_header.eml",
    "error_emails/cant_parse_from.eml",
    "error_emails/encoding_madness.eml",
    "multipart_report_emails/report_422.eml",
    "rfc6532/utf8_headers.eml",
    "attachment_emails/attachment_message_rfc822.eml",
    "mime_emails/raw_email_with_binary_encoded.eml",
]

#: Generous per-key limits: generated traffic must not turn into 429s (documented, but they would
#: keep the handlers from being reached).
RATELIMIT = "100000/minute"


@dataclass
class Seeded:
    """The app under test, its key and the ids the hooks mix into generated calls."""

    app: Starlette
    key: str
    #: A key of another organisation (tenancy: everything of ``key`` is a 404 for it).
    other_key: str
    domain_id: str
    victim_domain_id: str
    mailbox_id: str
    address: str
    victim_mailbox_id: str
    #: A mailbox of another organisation (404 with ``key``).
    foreign_mailbox_id: str
    #: Folder ids by role (system folders, lower case) and name (custom folders, capitalised).
    folders: dict[str, str]
    #: Custom folders that PATCH may rename or move, and that DELETE may remove.
    patch_folder_ids: list[str]
    victim_folder_ids: list[str]
    #: Messages (``eml_...``) of the seeded mailbox that stay; of those, the ones never moved (with
    #: attachments, or in the two-message thread) and the ones the move operation may take.
    message_ids: list[str]
    kept_message_ids: list[str]
    movable_message_ids: list[str]
    #: Messages in Trash that DELETE may remove.
    victim_message_ids: list[str]
    thread_ids: list[str]
    #: (blob id, content type, size) of every attachment of the seeded mail.
    attachments: list[tuple[str, str, int]]
    #: A blob id and a message id (``eml_...``) of another organisation's mailbox.
    foreign_blob_id: str
    foreign_message_id: str
    #: The blob id of a whole message (the RFC 5322 bytes, not an attachment) of the seeded mailbox.
    message_blob_id: str
    #: next_cursor of the first page of the message and thread lists (limit 1, no other filter).
    message_cursor: str
    thread_cursor: str
    #: Messages sent through the API (``msg_...``) from the seeded mailbox to another domain.
    sent_message_ids: list[str] = field(default_factory=list)
    #: Status codes seen per operation label (generated and explicit calls), and the operations the
    #: property test called.
    called: dict[str, set[int]] = field(default_factory=dict)
    generated: set[str] = field(default_factory=set)
    #: Known defects (name -> labels of the cases) that matched during the property tests.
    defect_hits: dict[str, list[str]] = field(default_factory=dict)

    @property
    def system_folder_ids(self) -> list[str]:
        return [fid for name, fid in self.folders.items() if name.islower()]

    @property
    def blob_ids(self) -> list[str]:
        return [blob for blob, _, _ in self.attachments]


def _message(
    subject: str, *, reply_to: EmailMessage | None = None, attachment: tuple[str, str, str, bytes] | None = None
) -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = '"Ann Example" <ann@sender.example>'
    msg["To"] = "someone@example.net"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="sender.example")
    if reply_to is not None:
        msg["In-Reply-To"] = reply_to["Message-ID"]
        msg["References"] = reply_to["Message-ID"]
    msg.set_content(f"{subject}: body text.\n")
    msg.add_alternative(f"<p>{subject}: <b>body</b> text.</p>\n", subtype="html")
    if attachment is not None:
        maintype, subtype, name, data = attachment
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg


def seed_rules(folders: dict[str, str]) -> list[dict[str, Any]]:
    """Inbox rules on the seeded folders: one moves to a custom folder (stop), one stars mail with
    attachments, a group moves newsletters to the folder PATCH renames, one files into Junk, one
    (disabled) moves to the second throwaway folder."""

    def rule(
        n: int, name: str, conditions: list[dict[str, Any]], actions: list[dict[str, Any]], **kw: Any
    ) -> dict[str, Any]:
        return {
            "id": f"00000000-0000-4000-8000-{n:012d}",
            "name": name,
            "enabled": kw.get("enabled", True),
            "position": n,
            "match_mode": kw.get("match_mode", "all"),
            "stop": kw.get("stop", False),
            "conditions": conditions,
            "actions": actions,
        }

    def custom(folder: str) -> dict[str, Any]:
        return {"type": "move", "target": {"kind": "custom", "folder_id": folder}}

    return [
        rule(
            1, "Projects", [{"type": "subject_contains", "value": "Project"}], [custom(folders["Projects"])], stop=True
        ),
        rule(2, "Star attachments", [{"type": "has_attachment"}], [{"type": "star"}]),
        rule(
            3,
            "Newsletters",
            [
                {
                    "type": "group",
                    "match_mode": "any",
                    "conditions": [
                        {"type": "from_contains", "value": "newsletter"},
                        {"type": "list_unsubscribe_exists"},
                    ],
                }
            ],
            [custom(folders["Rename me"]), {"type": "mark_read"}],
        ),
        rule(
            4,
            "Junk",
            [{"type": "from_is", "value": "spam@sender.example"}],
            [{"type": "move", "target": {"kind": "system", "role": "junk"}}],
        ),
        rule(
            5, "Disabled", [{"type": "plus_tag_is", "value": "later"}], [custom(folders["Throwaway 2"])], enabled=False
        ),
    ]


def _list(api: ApiEnv, mailbox_id: str, what: str, key: str | None = None, **params: Any) -> dict[str, Any]:
    r = api.client.get(f"/v1/mailboxes/{mailbox_id}/inbox/{what}", params=params, headers=api.auth(key))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _folder(api: ApiEnv, mailbox_id: str, name: str, parent_id: str | None = None) -> str:
    body: dict[str, Any] = {"name": name}
    if parent_id is not None:
        body["parent_id"] = parent_id
    r = api.client.post(f"/v1/mailboxes/{mailbox_id}/folders", json=body, headers=api.auth())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _mailbox(api: ApiEnv, domain_id: str, local: str) -> dict[str, Any]:
    r = api.client.post(
        "/v1/mailboxes", json={"domain_id": domain_id, "address": local, "generate_password": True}, headers=api.auth()
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def seed(api: ApiEnv) -> Seeded:
    c, h = api.client, api.auth()
    tag = secrets.token_hex(3)
    domain = api.verified_domain(f"st-{tag}.example")
    victim_domain = c.post("/v1/domains", json={"name": f"st-victim-{tag}.example"}, headers=h)
    assert victim_domain.status_code == 201, victim_domain.text
    mbx = _mailbox(api, str(domain["id"]), "inbox")
    victim_mbx = _mailbox(api, str(domain["id"]), "victim")
    mailbox_id, address = str(mbx["id"]), str(mbx["address"])

    # Another organisation's mailbox, with an attachment of its own (a blob this mailbox cannot read).
    other_key = api.new_key(org=f"other-{tag}")
    other_domain = api.verified_domain(f"st-other-{tag}.example", key=other_key)
    r = c.post(
        "/v1/mailboxes",
        json={"domain_id": other_domain["id"], "address": "them", "generate_password": True},
        headers=api.auth(other_key),
    )
    assert r.status_code == 201, r.text
    other = r.json()
    raw, _ = unique(corpus_bytes("attachment_emails/attachment_only_email.eml"), "other")
    assert api.lmtp(other["address"], raw) == {}
    foreign = _list_all_attachments(api, str(other["id"]), other_key)
    assert foreign, "no attachment in the other organisation's mailbox"
    foreign_message_id = _list(api, str(other["id"]), "messages", key=other_key)["data"][0]["id"]

    # Folders: one holding mail (with a subfolder), one for PATCH, two for DELETE.
    folders: dict[str, str] = {}
    folders["Projects"] = _folder(api, mailbox_id, "Projects")
    folders["Reports"] = _folder(api, mailbox_id, "Reports", folders["Projects"])
    folders["Rename me"] = _folder(api, mailbox_id, "Rename me")
    victims = [_folder(api, mailbox_id, f"Throwaway {i}") for i in (1, 2)]
    folders.update({f"Throwaway {i}": fid for i, fid in enumerate(victims, 1)})
    r = c.get(f"/v1/mailboxes/{mailbox_id}/folders", headers=h)
    assert r.status_code == 200, r.text
    for f in r.json()["data"]:
        if f["role"]:
            folders[f["role"]] = f["id"]

    # Mail: corpus messages, a thread of two with an empty attachment and a JSON one (a body the
    # checks must treat as bytes), and two messages moved to Trash for DELETE.
    for name in CORPUS_MESSAGES:
        raw, _ = unique(corpus_bytes(name), "seed")
        assert api.lmtp(address, raw) == {}, name
    first = _message("Quarterly plan", attachment=("application", "octet-stream", "empty.bin", b""))
    reply = _message(
        "Re: Quarterly plan",
        reply_to=first,
        attachment=("application", "json", "plan.json", b'{"quarter": 3, "items": [1, 2]}\n'),
    )
    for msg in (first, reply):
        assert api.lmtp(address, msg.as_bytes()) == {}
    trash_subjects = ["Throwaway message 1", "Throwaway message 2"]
    for subject in trash_subjects:
        assert api.lmtp(address, _message(subject).as_bytes()) == {}

    listed = _list(api, mailbox_id, "messages", limit=100)["data"]
    assert len(listed) == len(CORPUS_MESSAGES) + 4, [m["subject"] for m in listed]
    victim_message_ids = [m["id"] for m in listed if m["subject"] in trash_subjects]
    message_ids = [m["id"] for m in listed if m["subject"] not in trash_subjects]
    # Kept: never moved by the property tests (so DELETE refuses them: not in Trash or Junk).
    kept = [
        m["id"]
        for m in listed
        if m["id"] in message_ids and (m["has_attachment"] or "Quarterly plan" in (m["subject"] or ""))
    ]
    movable = [mid for mid in message_ids if mid not in kept]
    assert len(kept) >= 4 and len(movable) >= 4, (kept, movable)
    for mid in victim_message_ids:
        r = c.post(f"/v1/mailboxes/{mailbox_id}/inbox/messages/{mid}/move", json={"target_role": "trash"}, headers=h)
        assert r.status_code == 200, r.text
    # Some mail in custom folders and in Archive, one starred, one read.
    for mid, body in [
        (kept[0], {"target_folder_id": folders["Projects"]}),
        (movable[0], {"target_folder_id": folders["Reports"]}),
        (movable[1], {"target_role": "archive"}),
    ]:
        r = c.post(f"/v1/mailboxes/{mailbox_id}/inbox/messages/{mid}/move", json=body, headers=h)
        assert r.status_code == 200, r.text
    for mid, flags in [(kept[1], {"starred": True}), (movable[2], {"read": True})]:
        r = c.patch(f"/v1/mailboxes/{mailbox_id}/inbox/messages/{mid}", json=flags, headers=h)
        assert r.status_code == 200, r.text

    attachments = _list_all_attachments(api, mailbox_id)
    assert len(attachments) >= 5, attachments
    assert any(ctype.startswith("application/json") for _, ctype, _ in attachments), attachments
    assert any(size == 0 for _, _, size in attachments), attachments
    threads = _list(api, mailbox_id, "threads", limit=100)["data"]
    # Not the threads of the messages in Trash: they go when DELETE removes those.
    thread_ids = sorted({m["thread_id"] for m in listed if m["id"] in message_ids})
    assert any(t["message_count"] == 2 for t in threads), threads

    # The blob of a whole message, straight from JMAP (the API shows attachment blobs only).
    (got,) = jmap(
        api, address, [["Email/get", {"ids": [message_ids[0].partition("_")[2]], "properties": ["blobId"]}, "g"]]
    )
    message_blob_id = got[1]["list"][0]["blobId"]

    # Delivery settings for the mail the property tests deliver (sandbox inbound): inbox rules that
    # move to seeded folders (DELETE refuses a folder a rule targets), an auto-reply, a threshold.
    r = c.put(f"/v1/mailboxes/{mailbox_id}/rules", json={"rules": seed_rules(folders)}, headers=h)
    assert r.status_code == 200, r.text
    r = c.patch(
        f"/v1/mailboxes/{mailbox_id}/auto-reply",
        headers=h,
        json={
            "enabled": True,
            "subject": "Away",
            "body": "Back on Monday.\nRegards",
            "from_date": None,
            "to_date": None,
        },
    )
    assert r.status_code == 200, r.text
    r = c.patch(f"/v1/mailboxes/{mailbox_id}/spam-filter", json={"threshold": 5}, headers=h)
    assert r.status_code == 200, r.text

    message_cursor = _list(api, mailbox_id, "messages", limit=1)["pagination"]["next_cursor"]
    thread_cursor = _list(api, mailbox_id, "threads", limit=1)["pagination"]["next_cursor"]
    assert message_cursor and thread_cursor
    sent = c.post(
        "/v1/messages",
        json={"from": address, "to": ["far@elsewhere.example"], "subject": "Seeded send", "text": "hello"},
        headers=h,
    )
    assert sent.status_code == 201, sent.text

    return Seeded(
        app=api.client.app,  # type: ignore[arg-type]
        key=api.key,
        other_key=other_key,
        domain_id=str(domain["id"]),
        victim_domain_id=victim_domain.json()["id"],
        mailbox_id=mailbox_id,
        address=address,
        victim_mailbox_id=str(victim_mbx["id"]),
        foreign_mailbox_id=str(other["id"]),
        folders=folders,
        patch_folder_ids=[folders["Rename me"]],
        victim_folder_ids=victims,
        message_ids=message_ids,
        kept_message_ids=kept,
        movable_message_ids=movable,
        victim_message_ids=victim_message_ids,
        thread_ids=thread_ids,
        attachments=attachments,
        foreign_blob_id=foreign[0][0],
        foreign_message_id=foreign_message_id,
        message_blob_id=message_blob_id,
        message_cursor=message_cursor,
        thread_cursor=thread_cursor,
        sent_message_ids=[sent.json()["id"]],
    )


def _list_all_attachments(api: ApiEnv, mailbox_id: str, key: str | None = None) -> list[tuple[str, str, int]]:
    """(blob id, content type, size) of the attachments of every message of the mailbox (the API's
    message list, then each message with an attachment)."""
    r = api.client.get(f"/v1/mailboxes/{mailbox_id}/inbox/messages", params={"limit": 100}, headers=api.auth(key))
    assert r.status_code == 200, r.text
    found = []
    for m in r.json()["data"]:
        if not m["has_attachment"]:
            continue
        full = api.client.get(f"/v1/mailboxes/{mailbox_id}/inbox/messages/{m['id']}", headers=api.auth(key))
        assert full.status_code == 200, full.text
        found += [(a["blob_id"], a["content_type"], a["size"]) for a in full.json()["attachments"]]
    return found


def seeded_app(cyrus: CyrusFixture, tmp_path: Path) -> Iterator[Seeded]:
    """As the ``api`` fixture of conftest, but for a whole module (``api`` is per test, and
    schemathesis makes one test per operation while the seed must be shared by all of them), with
    limits generous enough that generated traffic does not turn into 429s; seeded through the
    ``ApiEnv`` helpers.

    The TestClient's lifespan serves the seed only and ends before the property tests run the app
    through schemathesis' ASGI transport, which starts a lifespan of its own: the lifespan sets
    ``app.state.services`` (the database and the JMAP client of its event loop), so two must not
    overlap."""
    from schemathesis.python import asgi as schemathesis_asgi
    from starlette.testclient import TestClient

    from shipmail.app import create_app
    from shipmail.app_passwords.logins import credential_lookup
    from shipmail.config import Settings
    from tests.dbfixtures import migrated_database
    from tests.dnsserver import dns_server
    from tests.integration.conftest import gateway_mail_server
    from tests.integration.gateway_thread import GatewayThread
    from tests.unit.conftest import make_key

    registry = cyrus.registry
    registry.reset()
    with (
        migrated_database("sqlite", tmp_path) as url,
        dns_server() as (_zone, resolver),
        GatewayThread(url, cyrus.instance, tmp_path) as gateway,
    ):
        inst = cyrus.instance
        settings = Settings.from_env(
            data_dir=tmp_path,
            database_url=url,
            secret_key=b"integration-secret",
            jmap_port=inst.jmap_port,
            lmtp_port=gateway.port,
            imap_port=inst.imap_port,
            ratelimit_read=RATELIMIT,
            ratelimit_write=RATELIMIT,
            ratelimit_verification=RATELIMIT,
            # The domain checks ask a test DNS server (empty zone: every record not_found).
            dns_resolver=resolver,
            dns_timeout=1.0,
            ratelimit_send=RATELIMIT,
        )
        lookup, close = credential_lookup(url)  # as `shipmail serve-login-checker` composes it
        registry.lookup = lookup
        app = create_app(settings, mail_server_factory=lambda s: gateway_mail_server(inst, s))
        try:
            with TestClient(app) as client:
                seeded = seed(ApiEnv(client=client, settings=settings, cyrus=cyrus, key=make_key(settings)))
            yield seeded
        finally:
            # schemathesis keeps an app's lifespan running for the whole process; end it here.
            schemathesis_asgi.shutdown_lifespans()
            close()
            registry.reset()
