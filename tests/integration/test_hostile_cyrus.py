"""Hostile input on the real Cyrus (issue 8, point 4): what the unit tests
(tests/unit/test_hostile_input.py) check against the fakes, measured end to end.

* Passwords of every documented length (8-128 characters, up to 4 UTF-8 bytes each) are set
  through the API and log in over IMAP (LOGIN and AUTHENTICATE PLAIN) and JMAP Basic; changing
  the 128th character alone is refused (nothing truncates on the way through libsasl and the
  login checker).
* The names Cyrus reserves (``anyone``, ``anybody``, ``anonymous``) and addresses longer than its
  logins allow answer 422 before Cyrus is asked; each is shown to be unusable on Cyrus itself.
* Attachment names with dot segments download the part (the name never reaches Cyrus's URL), and
  so does a part whose media type is a dot segment.
* A ``Range`` position of more digits than Python turns into an int answers 416/206.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import secrets
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shipmail.mailserver.base import MailServerError
from shipmail.mailserver.cyrus_server import MAX_ADDRESS_LENGTH, RESERVED_LOCAL_PARTS
from tests.integration.conftest import ApiEnv, AuthRegistry, CyrusFixture
from tests.integration.corpus import ids_by_message_id, unique

HUGE = "9" * (sys.get_int_max_str_digits() + 1)


def _imap(api: ApiEnv) -> imaplib.IMAP4:
    return imaplib.IMAP4(api.cyrus.instance.connect_host, api.cyrus.instance.imap_port, timeout=15)


def imap_logs_in(api: ApiEnv, address: str, password: str, *, plain: bool) -> bool:
    """Whether ``address`` logs in with ``password``: IMAP ``AUTHENTICATE PLAIN`` (RFC 4616, UTF-8:
    what clients send for non-ASCII passwords) or ``LOGIN`` (ASCII only in imaplib)."""
    conn = _imap(api)
    try:
        if plain:
            secret = b"\0" + address.encode() + b"\0" + password.encode("utf-8")
            conn.authenticate("PLAIN", lambda _: secret)
        else:
            conn.login(address, password)
    except imaplib.IMAP4.error:
        return False
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.logout()
    return True


def basic_status(api: ApiEnv, address: str, password: str) -> int:
    """Status of ``GET /jmap/`` with HTTP Basic (RFC 7617, UTF-8 credentials)."""
    token = base64.b64encode(f"{address}:{password}".encode()).decode("ascii")
    return httpx.get(api.cyrus.server.session_url, headers={"Authorization": f"Basic {token}"}, timeout=15).status_code


def _password(length: int) -> str:
    alphabet = "Zq8-Lantern-Meadow-"
    return (alphabet * (length // len(alphabet) + 1))[:length]


PASSWORDS = [
    pytest.param(_password(8).replace("-", "x"), id="8-ascii"),
    pytest.param(_password(72), id="72-ascii"),
    pytest.param(_password(73), id="73-ascii"),
    pytest.param(_password(128), id="128-ascii"),
    pytest.param("Aa9" + ("日本語のパスワード" * 14)[:125], id="128-cjk-380-bytes"),
    pytest.param("Aa9Ünï" + "😀🔑" * 61, id="128-astral-497-bytes"),
]


@pytest.mark.parametrize("password", PASSWORDS)
def test_passwords_of_every_documented_length_log_in(api: ApiEnv, password: str) -> None:
    assert 8 <= len(password) <= 128
    mbx = api.new_mailbox(f"pw{secrets.token_hex(3)}.example", "owner", password=password)
    address = mbx["address"]
    wrong = password[:-1] + ("x" if password[-1] != "x" else "y")  # only the last character differs
    ascii_only = password.isascii()
    assert imap_logs_in(api, address, password, plain=True)
    assert not imap_logs_in(api, address, wrong, plain=True)
    if ascii_only:
        assert imap_logs_in(api, address, password, plain=False)
        assert not imap_logs_in(api, address, wrong, plain=False)
    assert (basic_status(api, address, password), basic_status(api, address, wrong)) == (200, 401)

    # Reset to the other one: from then on only it works.
    r = api.client.patch(f"/v1/mailboxes/{mbx['id']}/password", json={"password": wrong}, headers=api.auth())
    assert r.status_code == 200, r.text
    assert imap_logs_in(api, address, wrong, plain=True) and not imap_logs_in(api, address, password, plain=True)
    assert (basic_status(api, address, wrong), basic_status(api, address, password)) == (200, 401)


# ----------------------------------------------------------------------------- reserved names


def _create(api: ApiEnv, domain_id: str, local: str) -> Any:
    return api.client.post(
        "/v1/mailboxes",
        json={"domain_id": domain_id, "address": local, "password": "Vq7-Lantern-Meadow-42"},
        headers=api.auth(),
    )


@pytest.mark.parametrize("local", ["anonymous", "Anonymous", "anyone", "ANYONE", "anybody", "AnyBody"])
def test_names_cyrus_reserves_are_422_before_it_is_asked(api: ApiEnv, local: str) -> None:
    dom = api.verified_domain(f"reserved{secrets.token_hex(3)}.example")
    r = _create(api, str(dom["id"]), local)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert [(d["field"], d["code"]) for d in err["details"]] == [("address", "reserved_address")]
    assert "reserved" in err["message"] and err["request_id"] == r.headers["x-request-id"]
    assert api.client.get("/v1/mailboxes", headers=api.auth()).json()["data"] == []
    assert not _exists(api.cyrus, f"{local.lower()}@{dom['name']}")


def _exists(cyrus: CyrusFixture, address: str) -> bool:
    import asyncio

    return asyncio.run(cyrus.server.exists(address))


async def test_the_reserved_names_are_unusable_on_cyrus(cyrus: CyrusFixture, authd_registry: AuthRegistry) -> None:
    """Why they are refused: ``anyone`` and ``anonymous`` cannot be created (NO Invalid mailbox
    name), ``anybody`` is created but its owner can never log in (Cyrus reads it as ``anyone``),
    while a name next to them works."""
    domain = f"cyrus{secrets.token_hex(3)}.example"
    assert {"anyone", "anybody", "anonymous"} == RESERVED_LOCAL_PARTS
    for local in ("anyone", "anonymous"):
        with pytest.raises(MailServerError, match="Invalid mailbox name"):
            await cyrus.server.provision(f"{local}@{domain}")
    for local, logs_in in (("anybody", False), ("anybody1", True)):
        address = f"{local}@{domain}"
        assert await _provisioned_owner_logs_in(cyrus, authd_registry, address) is logs_in, address


async def test_addresses_longer_than_80_bytes_cannot_log_in_on_cyrus(
    cyrus: CyrusFixture, authd_registry: AuthRegistry
) -> None:
    """Cyrus creates the account but refuses its owner's logins (``Invalid user``): the limit
    :meth:`CyrusMailServer.address_problem` applies."""
    for length, logs_in in ((MAX_ADDRESS_LENGTH, True), (MAX_ADDRESS_LENGTH + 1, False)):
        domain = f"{secrets.token_hex(6)}.example"  # 20 characters: the local part stays within 64
        address = "l" * (length - 1 - len(domain)) + "@" + domain
        assert len(address) == length
        assert await _provisioned_owner_logs_in(cyrus, authd_registry, address) is logs_in, length


def test_the_longest_address_is_created_and_one_more_is_422(api: ApiEnv) -> None:
    domain = f"{secrets.token_hex(6)}.example"  # 20 characters: the local part stays within 64
    dom = api.verified_domain(domain)
    local = "l" * (MAX_ADDRESS_LENGTH - 1 - len(domain))
    r = _create(api, str(dom["id"]), local)
    assert r.status_code == 201, r.text
    assert imap_logs_in(api, r.json()["address"], "Vq7-Lantern-Meadow-42", plain=False)
    r = _create(api, str(dom["id"]), local + "x")
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "reserved_address", r.text
    assert not _exists(api.cyrus, f"{local}x@{domain}")


def test_the_admins_name_on_a_domain_is_an_ordinary_mailbox(api: ApiEnv) -> None:
    """Cyrus's admin is ``admin`` without a domain; ``admin@<domain>`` is an ordinary user: it
    logs in and sees only its own folders."""
    other = api.new_mailbox(f"o{secrets.token_hex(3)}.example", "other")
    mbx = api.new_mailbox(f"a{secrets.token_hex(3)}.example", "admin", password="Vq7-Lantern-Meadow-42")
    conn = _imap(api)
    try:
        conn.login(mbx["address"], "Vq7-Lantern-Meadow-42")
        status, listed = conn.list('""', "*")
    finally:
        conn.logout()
    assert status == "OK"
    names = b" ".join(item for item in listed if isinstance(item, bytes))
    assert b"INBOX" in names and other["address"].split("@")[0].encode() not in names


# ----------------------------------------------------------------------------- attachments


def _message_with(parts: list[tuple[str, str, bytes]]) -> bytes:
    """A multipart message whose parts are ``(content type line, file name, bytes)``, base64."""
    boundary = "b-" + secrets.token_hex(6)
    lines = [
        "From: a@sender.example",
        "To: someone@example.com",
        "Subject: attachments",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "see attached",
    ]
    for content_type, name, data in parts:
        lines += [
            f"--{boundary}",
            f"Content-Type: {content_type}",
            f'Content-Disposition: attachment; filename="{name}"',
            "Content-Transfer-Encoding: base64",
            "",
            base64.encodebytes(data).decode("ascii").strip(),
        ]
    lines.append(f"--{boundary}--")
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.fixture
def delivered(api: ApiEnv) -> dict[str, Any]:
    """A mailbox holding one message with two attachments: an ordinary one and one whose media
    type is ``../x`` (a token, not a type: Cyrus's URL would see a dot segment)."""
    mbx = api.new_mailbox(f"att{secrets.token_hex(3)}.example", "files")
    plain, odd = b"plain bytes \x00\x01\xff" * 50, b"odd media type"
    raw, mid = unique(
        _message_with([("application/pdf", "report.pdf", plain), ("../x", "odd.bin", odd)]),
        tag="hostile",
    )
    assert api.lmtp(mbx["address"], raw) == {}
    email_id = ids_by_message_id(api, mbx["address"])[mid]
    message = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/messages/eml_{email_id}", headers=api.auth())
    assert message.status_code == 200, message.text
    atts = {a["name"]: a for a in message.json()["attachments"]}
    return {
        "mailbox": mbx,
        "plain": (atts["report.pdf"]["blob_id"], plain),
        "odd": (atts["odd.bin"]["blob_id"], odd),
        "paths": {"plain": atts["report.pdf"]["download_path"], "odd": atts["odd.bin"]["download_path"]},
    }


def _download(api: ApiEnv, delivered: dict[str, Any], which: str, **kw: Any) -> Any:
    """Download the attachment by its download_path's query (blob, message and part)."""
    query = parse_qs(urlsplit(delivered["paths"][which]).query)
    params = {**{k: v[0] for k, v in query.items()}, **kw.pop("params", {})}
    return api.client.get(
        f"/v1/mailboxes/{delivered['mailbox']['id']}/inbox/attachments", params=params, headers={**api.auth(), **kw}
    )


@pytest.mark.parametrize("name", [".", "..", "../x", "x/..", "a/../b", "/", "./.", "..%2F..", "%2e%2e"])
def test_attachment_names_with_dot_segments_download_the_part(
    api: ApiEnv, delivered: dict[str, Any], name: str
) -> None:
    r = _download(api, delivered, "plain", params={"name": name})
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.content == delivered["plain"][1]
    assert r.headers["content-type"] == "application/pdf"
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="') and "/" not in disposition.split("filename=")[1][:1]


def test_ordinary_names_still_name_the_download(api: ApiEnv, delivered: dict[str, Any]) -> None:
    r = _download(api, delivered, "plain")
    assert r.status_code == 200 and r.headers["content-disposition"] == 'attachment; filename="report.pdf"'
    r = _download(api, delivered, "plain", params={"name": "Résumé final.pdf"})
    assert r.status_code == 200 and r.content == delivered["plain"][1]
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"Resume final.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20final.pdf"
    )


def test_a_part_whose_media_type_is_a_dot_segment_downloads_as_octet_stream(
    api: ApiEnv, delivered: dict[str, Any]
) -> None:
    r = _download(api, delivered, "odd")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.content == delivered["odd"][1]
    assert r.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("header", "status", "cut"),
    [
        (f"bytes={HUGE}-", 416, None),
        (f"bytes={HUGE}-{HUGE}", 416, None),
        (f"bytes=0-{HUGE}", 206, (0, None)),
        (f"bytes=-{HUGE}", 206, (0, None)),
        (f"bytes=3-{HUGE}", 206, (3, None)),
        (f"bytes={HUGE}-3", 200, (0, None)),
    ],
)
def test_range_positions_of_any_length(
    api: ApiEnv, delivered: dict[str, Any], header: str, status: int, cut: tuple[int, None] | None
) -> None:
    data = delivered["plain"][1]
    r = _download(api, delivered, "plain", Range=header)
    assert r.status_code == status, (r.status_code, r.text[:300])
    if cut is None:
        assert r.headers["content-range"] == f"bytes */{len(data)}" and r.content == b""
    else:
        assert r.content == data[cut[0] :]
        if status == 206:
            assert r.headers["content-range"] == f"bytes {cut[0]}-{len(data) - 1}/{len(data)}"


def test_integer_beyond_the_int_string_limit_is_422(api: ApiEnv) -> None:
    mbx = api.new_mailbox(f"n{secrets.token_hex(3)}.example", "numbers")
    r = api.client.patch(
        f"/v1/mailboxes/{mbx['id']}/spam-filter",
        content=b'{"threshold": ' + HUGE.encode() + b"}",
        headers={**api.auth(), "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text[:300]
    assert r.json()["error"]["details"][0]["code"] == "json_invalid"
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).json() == mbx


async def _provisioned_owner_logs_in(cyrus: CyrusFixture, authd_registry: AuthRegistry, address: str) -> bool:
    """Provision ``address`` on Cyrus, give it a password, and whether its owner can then log in
    over IMAP; the account is removed again."""
    await cyrus.server.provision(address)
    try:
        authd_registry.set_password(address, "Right-Password-1")
        conn = imaplib.IMAP4(cyrus.instance.connect_host, cyrus.instance.imap_port, timeout=15)
        try:
            conn.login(address, "Right-Password-1")
            return True
        except imaplib.IMAP4.error:
            return False
        finally:
            conn.shutdown()
    finally:
        await cyrus.server.deprovision(address)
