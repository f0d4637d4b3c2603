"""What a webmail needs to render real mail (issue 9, "Fidelity defects"), against the real Cyrus:
downloads serve the part the client asked for, inline parts can be shown, ``has_attachment``
agrees with ``attachments``, header values are unfolded, the original message can be downloaded,
previews of HTML-only mail are text, and the list serves full messages with bounded bodies."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.integration.conftest import ApiEnv
from tests.integration.test_inbox_messages import costs_one_request, get, new_mailbox

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def mime(subject: str, body: str, *, headers: str = "", top: str = "multipart/mixed") -> bytes:
    """A CRLF message with a ``top`` multipart body made of ``body`` (parts separated by
    ``--B``), a fresh Message-ID."""
    head = (
        "From: Ann <ann@sender.example>\r\n"
        "To: rcpt@example.net\r\n"
        f"Subject: {subject}\r\n"
        "Date: Sat, 21 Nov 2026 09:00:00 +0000\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@sender.example>\r\n"
        f"{headers}"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: {top}; boundary="B"\r\n\r\n'
    )
    return (head + body.replace("\n", "\r\n")).encode()


def one(api: ApiEnv, mbx: dict[str, Any], subject: str) -> dict[str, Any]:
    """The full message of the mailbox with this subject."""
    (item,) = get(api, f"/mailboxes/{mbx['id']}/inbox/messages", subject=subject)["data"]
    return get(api, f"/mailboxes/{mbx['id']}/inbox/messages/{item['id']}")  # type: ignore[no-any-return]


def download(api: ApiEnv, path: str, **headers: str) -> Any:
    return api.client.get(f"/v1{path}", headers={**api.auth(), **headers})


# ----------------------------------------------------------------------------- 1. downloads


def test_identical_bytes_keep_each_parts_type_and_name(api: ApiEnv) -> None:
    """Identical bytes share one blob id: the download_path names message and part, so each part is
    served with its own type and name (not the first part holding the blob)."""
    mbx = new_mailbox(api)
    first = mime(
        "Identical one",
        "--B\nContent-Type: text/plain\n\nsee attached\n"
        '--B\nContent-Type: image/gif; name="a.gif"\nContent-Disposition: attachment\n'
        "Content-Transfer-Encoding: base64\n\nAA==\n"
        "--B\nContent-Type: text/x-one\nContent-Disposition: attachment\n\nsame text\n--B--\n",
    )
    second = mime(
        "Identical two",
        "--B\nContent-Type: text/plain\n\nsee attached\n"
        '--B\nContent-Type: application/postscript; name="doc.ps"\nContent-Transfer-Encoding: base64\n\nAA==\n'
        "--B\nContent-Type: text/x-two\nContent-Disposition: attachment\n\nsame text\n--B--\n",
    )
    assert api.lmtp(mbx["address"], first) == {}
    assert api.lmtp(mbx["address"], second) == {}
    one_msg, two_msg = one(api, mbx, "Identical one"), one(api, mbx, "Identical two")
    assert [a["blob_id"] for a in one_msg["attachments"]] == [a["blob_id"] for a in two_msg["attachments"]]
    for msg in (one_msg, two_msg):
        for att in msg["attachments"]:
            query = parse_qs(urlsplit(att["download_path"]).query)
            assert query["message_id"] == [msg["id"]] and query["part_id"] == [att["part_id"]]
            r = download(api, att["download_path"])
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].split(";")[0] == att["content_type"]
            expected = att["name"] or "attachment"
            assert r.headers["content-disposition"] == f'attachment; filename="{expected}"'
    assert [a["content_type"] for a in two_msg["attachments"]] == ["application/postscript", "text/x-two"]

    # The blob alone: no part, so application/octet-stream named "attachment", or the `type` asked for.
    blob = two_msg["attachments"][0]["blob_id"]
    base = f"/mailboxes/{mbx['id']}/inbox/attachments"
    r = api.client.get(f"/v1{base}", params={"blob_id": blob}, headers=api.auth())
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == 'attachment; filename="attachment"'
    r = api.client.get(f"/v1{base}", params={"blob_id": blob, "type": "image/gif", "name": "x.gif"}, headers=api.auth())
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    assert r.headers["content-disposition"] == 'attachment; filename="x.gif"'
    # A part of another blob, an unknown part or message: 404; part_id without message_id, a bad type: 422.
    other = two_msg["attachments"][1]
    for params, status in (
        ({"blob_id": blob, "message_id": two_msg["id"], "part_id": other["part_id"]}, 404),
        ({"blob_id": blob, "message_id": two_msg["id"], "part_id": "9.9"}, 404),
        ({"blob_id": blob, "message_id": "eml_Mdoesnotexist0000000000", "part_id": "2"}, 404),
        ({"blob_id": blob, "part_id": "2"}, 422),
        ({"blob_id": blob, "type": "image/../x"}, 422),
    ):
        r = api.client.get(f"/v1{base}", params=params, headers=api.auth())
        assert r.status_code == status, (params, r.text)


# ----------------------------------------------------------------------------- 2. inline parts


def test_inline_images_carry_blob_cid_and_download_path(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    import base64

    gif = base64.b64encode(GIF).decode()
    raw = mime(
        "Inline image",
        '--B\nContent-Type: text/html; charset=utf-8\n\n<p>Logo: <img src="cid:logo@x"></p>\n'
        "--B\nContent-Type: image/gif\nContent-ID: <logo@x>\nContent-Disposition: inline\n"
        f"Content-Transfer-Encoding: base64\n\n{gif}\n--B--\n",
    )
    assert api.lmtp(mbx["address"], raw) == {}
    msg = one(api, mbx, "Inline image")
    (html, image) = msg["html_body"]
    assert html["type"] == "text/html" and html["blob_id"] and html["download_path"]
    assert image["type"] == "image/gif" and image["cid"] == "logo@x" and image["disposition"] == "inline"
    assert image["name"] is None and image["blob_id"]
    r = download(api, image["download_path"])
    assert r.status_code == 200 and r.content == GIF
    assert r.headers["content-type"] == "image/gif"
    assert r.headers["content-disposition"] == 'attachment; filename="attachment"'
    # The text part's own download: its type with its charset.
    r = download(api, html["download_path"])
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert b"cid:logo@x" in r.content
    for part in msg["text_body"] + msg["html_body"]:
        assert set(part) >= {"part_id", "type", "blob_id", "cid", "disposition", "name", "download_path"}


# ----------------------------------------------------------------------------- 3. has_attachment


def test_has_attachment_agrees_with_the_attachments_list(api: ApiEnv) -> None:
    """Parts the mail server's own heuristic does not count (a nameless octet-stream part, a
    PGP signature) are in `attachments`; the flag says so, and a plain message has none."""
    mbx = new_mailbox(api)
    octet = mime(
        "Nameless octet",
        "--B\nContent-Type: text/plain\n\nbody\n"
        "--B\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAECAw==\n--B--\n",
    )
    signed = mime(
        "Signed",
        "--B\nContent-Type: text/plain\n\nsigned body\n"
        "--B\nContent-Type: application/pgp-signature\n\n-----BEGIN PGP SIGNATURE-----\nx\n"
        "-----END PGP SIGNATURE-----\n--B--\n",
        top='multipart/signed; protocol="application/pgp-signature"',
    )
    plain = mime("Plain", "--B\nContent-Type: text/plain\n\nonly text\n--B--\n")
    for raw in (octet, signed, plain):
        assert api.lmtp(mbx["address"], raw) == {}
    base = f"/mailboxes/{mbx['id']}/inbox/messages"
    listed = {m["subject"]: m for m in get(api, base)["data"]}
    for subject in ("Nameless octet", "Signed", "Plain"):
        full = one(api, mbx, subject)
        assert full["has_attachment"] is bool(full["attachments"]), subject
        assert listed[subject]["has_attachment"] is full["has_attachment"]
    assert listed["Nameless octet"]["has_attachment"] and listed["Signed"]["has_attachment"]
    assert not listed["Plain"]["has_attachment"]
    # The filter agrees with the flag.
    with_attachment = {m["subject"] for m in get(api, base, has_attachment="true")["data"]}
    without = {m["subject"] for m in get(api, base, has_attachment="false")["data"]}
    assert with_attachment == {"Nameless octet", "Signed"} and without == {"Plain"}


# ----------------------------------------------------------------------------- 4. headers


def test_header_values_are_unfolded_and_raw_on_request(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    raw = mime(
        "Folded",
        "--B\nContent-Type: text/plain\n\nx\n--B--\n",
        headers="X-Long: first part\r\n  second part\r\n\tthird\r\nX-Plain: value\r\n",
    )
    assert api.lmtp(mbx["address"], raw) == {}
    msg = one(api, mbx, "Folded")
    values = {h["name"]: h["value"] for h in msg["headers"]}
    assert values["X-Long"] == "first part  second part\tthird"
    assert values["X-Plain"] == "value" and values["Subject"] == "Folded"
    assert all("\r" not in h["value"] and "\n" not in h["value"] for h in msg["headers"])
    assert all(not h["value"].startswith((" ", "\t")) for h in msg["headers"])
    path = f"/mailboxes/{mbx['id']}/inbox/messages/{msg['id']}"
    raw_values = {h["name"]: h["value"] for h in get(api, path, headers="raw")["headers"]}
    assert raw_values["X-Long"] == " first part\r\n  second part\r\n\tthird"
    assert raw_values["X-Plain"] == " value"
    thread = get(api, f"/mailboxes/{mbx['id']}/inbox/threads/{msg['thread_id']}", headers="raw")
    assert {h["name"]: h["value"] for h in thread["data"][0]["headers"]}["X-Long"] == raw_values["X-Long"]
    r = api.client.get(f"/v1{path}", params={"headers": "folded"}, headers=api.auth())
    assert r.status_code == 422


# ----------------------------------------------------------------------------- 5. the original message


def test_raw_download_is_the_stored_message(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    raw = mime(
        "Quarterly / report",
        "--B\nContent-Type: text/plain\n\nnumbers\n--B\nContent-Type: message/rfc822\n\n"
        "From: Bob <bob@x.example>\nSubject: inner\n\ninner body\n--B--\n",
    )
    assert api.lmtp(mbx["address"], raw) == {}
    msg = one(api, mbx, "Quarterly / report")
    path = f"/mailboxes/{mbx['id']}/inbox/messages/{msg['id']}/raw"
    r = download(api, path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "message/rfc822"
    assert r.headers["content-disposition"] == 'attachment; filename="Quarterly _ report.eml"'
    # What was delivered, after the trace header fields Cyrus prepends (Return-Path, Received).
    assert r.content.endswith(raw)
    prepended = r.content[: -len(raw)].decode()
    assert prepended.startswith("Return-Path: ") and "Received: " in prepended
    assert int(r.headers["content-length"]) == len(r.content) == msg["size"]
    etag = r.headers["etag"]
    assert download(api, path, **{"If-None-Match": etag}).status_code == 304
    part = download(api, path, Range="bytes=0-11")
    assert part.status_code == 206 and part.content == r.content[:12]
    assert part.headers["content-range"] == f"bytes 0-11/{len(r.content)}"
    head = api.client.head(f"/v1{path}", headers=api.auth())
    assert head.status_code == 200 and head.headers["content-length"] == str(len(r.content))
    # The nameless message/rfc822 attachment downloads as an .eml.
    (inner,) = msg["attachments"]
    assert inner["content_type"] == "message/rfc822" and inner["name"] is None
    r = download(api, inner["download_path"])
    assert r.status_code == 200 and r.headers["content-type"] == "message/rfc822"
    assert r.headers["content-disposition"] == 'attachment; filename="attachment.eml"'
    # Unknown message, another organisation, the wrong scope.
    assert download(api, f"/mailboxes/{mbx['id']}/inbox/messages/eml_Mnone00000000000000000/raw").status_code == 404
    globex = api.new_key(org="globex")
    assert api.client.get(f"/v1{path}", headers=api.auth(globex)).status_code == 404
    assert api.client.get(f"/v1{path}", headers=api.auth(api.new_key(scopes=["mailboxes:read"]))).status_code == 403


def test_raw_download_without_subject_is_named_by_id(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    raw = (
        "From: ann@sender.example\r\nTo: rcpt@example.net\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@sender.example>\r\n\r\nno subject\r\n"
    ).encode()
    assert api.lmtp(mbx["address"], raw) == {}
    (item,) = get(api, f"/mailboxes/{mbx['id']}/inbox/messages")["data"]
    r = download(api, f"/mailboxes/{mbx['id']}/inbox/messages/{item['id']}/raw")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == f'attachment; filename="{item["id"]}.eml"'


# ----------------------------------------------------------------------------- 6. previews


def test_html_only_mail_has_a_text_preview(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    html = (
        "<HTML><HEAD> <TITLE>RE[4]: budget</TITLE><style>p { color: red }</style></HEAD>"
        "<BODY><p>Dear&nbsp;team,</p><script>var x = 1;</script>\n\n<p>caf&eacute; &amp; "
        + "more words " * 60
        + "</p></BODY></HTML>"
    )
    raw = (
        "From: ann@sender.example\r\nTo: rcpt@example.net\r\nSubject: Html only\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@sender.example>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
    ).encode()
    assert api.lmtp(mbx["address"], raw) == {}
    base = f"/mailboxes/{mbx['id']}/inbox"
    (item,) = costs_one_request(api, lambda: get(api, f"{base}/messages"))["data"]
    assert item["preview"].startswith("Dear team, café & more words more words")
    assert len(item["preview"]) == 256 and "<" not in item["preview"] and "color" not in item["preview"]
    assert get(api, f"{base}/messages/{item['id']}")["preview"] == item["preview"]
    (summary,) = costs_one_request(api, lambda: get(api, f"{base}/threads"))["data"]
    assert summary["latest_message"]["preview"] == item["preview"]


# ----------------------------------------------------------------------------- 7. the list in full


def test_list_items_are_full_messages_with_bounded_bodies(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    long_text = "0123456789abcdef" * 4096  # 64 KiB
    raw = mime(
        "Long body",
        f"--B\nContent-Type: text/plain\n\n{long_text}\n--B--\n",
        headers="Cc: cc@example.net\r\nReply-To: r@example.net\r\nIn-Reply-To: <a@x>\r\nReferences: <a@x>\r\n",
    )
    assert api.lmtp(mbx["address"], raw) == {}
    base = f"/mailboxes/{mbx['id']}/inbox/messages"
    (item,) = costs_one_request(api, lambda: get(api, base))["data"]
    assert item["object"] == "inbox_message_full"
    assert item["cc"] == [{"name": None, "email": "cc@example.net"}]
    assert item["reply_to"] == [{"name": None, "email": "r@example.net"}]
    assert item["in_reply_to"] == ["a@x"] and item["references"] == ["a@x"] and item["message_id"]
    (text,) = item["text_body"]
    value = item["body_values"][text["part_id"]]
    assert value["is_truncated"] is True and len(value["value"].encode()) <= 32 * 1024
    assert long_text.startswith(value["value"].rstrip())
    full = get(api, f"{base}/{item['id']}")
    assert full["body_values"][text["part_id"]]["is_truncated"] is False
    assert full["body_values"][text["part_id"]]["value"].startswith(long_text)
    # reply_text is the new text of the body value the rendering has: cut like it in a list.
    assert full["reply_text"] == long_text and long_text.startswith(item["reply_text"])
    assert {k: v for k, v in item.items() if k not in ("body_values", "reply_text")} == {
        k: v for k, v in full.items() if k not in ("body_values", "reply_text")
    }
