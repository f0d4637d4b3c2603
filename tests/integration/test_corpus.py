"""Real mail through the whole read path: every file of the shared corpus
(/work/shared/corpus/mail-fixtures) is delivered over LMTP into one mailbox and walked through the
message list (all pages; each item is the full message with its body values cut at the list's
bound), the full message, its thread, the thread list, the original download (``/raw``: what was
delivered plus the header fields Cyrus adds) and the download of every attachment and every
inline body part (by its ``download_path``: the part's own type and name). Nothing may answer 5xx;
subjects, From/To addresses and attachment file names must equal what Python's ``email`` package
(policy.default) makes of the original, every attachment's and non-text inline part's bytes what
Python's parser extracts; ``has_attachment`` is whether ``attachments`` is not empty, and the
``has_attachment`` filter selects those messages but for the documented ``FILTER_EXCEPTIONS``.
The few legitimate differences (truly broken input, or the JMAP
specification deciding otherwise) are listed in ``EXCEPTIONS`` with the reason; the test fails on
any other difference AND on an exception that no longer happens.

How the files are delivered, as an MTA would:

* The bytes go as they are, bare LF line ends included (6 files): Cyrus's lmtpd accepts them and
  stores CRLF (checked: these files come out exactly like their CRLF twins). Python's expectations
  are computed on the CRLF form.
* A leading mbox ``From `` separator line (22 files) is removed: it is mbox framing, not part of
  the message (RFC 4155), and MTAs strip it; Cyrus refuses it as an invalid header (554 5.6.0).
* Each file gets its own envelope sender ``corpus-<n>@fixtures.test``: Cyrus records it as the
  first ``Return-Path`` header, which maps a stored message back to its file.

Cyrus settings that change what is stored (read from the instance's imapd.conf):

* ``munge8bit`` (Cyrus default: on) rewrites every 8-bit byte in the top-level header as ``X``
  before storing (11 files carry raw 8-bit/UTF-8 headers, RFC 6532). With it on, the expected
  values are Python's for the original with the same rewrite.
* ``duplicatesuppression`` (Cyrus default: on) silently drops (250 OK) a second message with the
  same Message-ID for the same mailbox (42 files share a Message-ID with another, up to 8 the same
  one: 31 would be lost). With it on, the n-th file of a Message-ID goes to an n-th mailbox so
  that every file is still walked.
"""

from __future__ import annotations

import contextlib
import email
import re
import smtplib
from collections import defaultdict
from email import policy
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from shipmail.inbox.attachments import content_disposition
from tests.integration.conftest import ApiEnv
from tests.integration.test_inbox_messages import jmap_requests, new_mailbox

CORPUS = Path("/work/shared/corpus/mail-fixtures")

#: Files Cyrus refuses at delivery: 554 5.6.0 "Message contains invalid header" (a header line
#: that is not ``name: value``). Python parses them leniently (it makes a defect of the line).
REFUSED = {
    # "References: <baz@bar.net>, <invalid.   " is followed by "something@bar.net>" at column 0:
    # a line without a colon in the header section (a broken fold).
    "error_emails/multiple_references_with_one_invalid.eml": "line without a colon in the header",
    # "quite Delivered-To: xxx@xxx.xxx": a header name with a space in it.
    "plain_emails/raw_email_incorrect_header.eml": "header name with a space",
    # "From  : John Doe ..." (RFC 5322 section 4.5 obsolete syntax: white space before the colon).
    "rfc2822/example13.eml": "white space before the colon (obsolete syntax)",
}

#: Documented differences: {file: {check: reason}}. A check is "subject", "from", "to",
#: "attachment <partId> name", "attachment <partId> bytes", "part <partId> bytes" (an inline body
#: part) or "raw" (the original download). ``KEPT_8BIT`` marks those that
#: happen only when Cyrus keeps 8-bit headers (munge8bit: no).
EXCEPTIONS: dict[str, dict[str, str]] = {
    "attachment_emails/attachment_with_base64_encoded_name.eml": {
        "attachment 2 name": "Content-Type: application/pdf; name==?utf-8?B?VGhpcyBpcyBhIHRlc3QucGRm?= : an "
        "unquoted encoded-word as a parameter value (RFC 2047 section 5 forbids it; '=' is not a token "
        "character). Python drops the parameter (None); Cyrus decodes it to 'This is a test.pdf', as mail "
        "clients do.",
    },
    "attachment_emails/attachment_with_unquoted_name.eml": {
        "attachment 2 name": "filename=This is a test.txt : an unquoted value with spaces (RFC 2045 needs quotes). "
        "Python keeps the first token 'This'; Cyrus takes the whole 'This is a test.txt'.",
    },
    "error_emails/bad_subject.eml": {
        "from": "The display name is split over adjacent encoded-words in the middle of words "
        "(=?UTF-8?B?TXlTdXJ2ZXk=?= =?UTF-8?B?LmNvbSAmIEM=?= ...). RFC 2047 section 6.2 says the white space "
        "between adjacent encoded-words is not displayed: Cyrus gives 'MySurvey.com & Carol Adams'; Python's "
        "address parser keeps it ('MySurvey .com & C arol Ada ms'; its Subject parser gets it right).",
    },
    "error_emails/missing_body.eml": {
        "to": "To: <Undisclosed-Recipient:@mailman.enron.com;> (a group inside angle brackets). Python reads "
        "addr-spec 'Undisclosed-Recipient', Cyrus 'Undisclosed-Recipient:@mailman.enron.com': both guess.",
    },
    "mime_emails/raw_email_with_binary_encoded.eml": {
        "subject": "Two Subject header fields. RFC 8621 section 4.1.3 (JMAP `subject`) takes the LAST one "
        "('Another PDF'); Python's msg['subject'] the first ('Testing outlook').",
        "attachment 1 name": "boundary=----=_Part_13069834_15179892.1376435426074 is unquoted and contains '=' "
        "(RFC 2045 requires quotes): Python finds no boundary and sees one text body; Cyrus splits the "
        "multipart and finds the image/jpeg part named 2013-08-13_19-08-28-1.jpg.",
        "attachment 1 bytes": "Same unquoted boundary: Cyrus's part holds the 24 bytes between the boundaries; "
        "Python has no such part.",
    },
    "plain_emails/raw_email_bad_time.eml": {
        "part 2 bytes": "boundary=----=_NextPart_000_0023_08_E8CD50F3.4EF2F754 is unquoted and contains '=' (RFC 2045 "
        "requires quotes): Python finds no boundary (StartBoundaryNotFoundDefect), so it has no part 2; Cyrus "
        "splits the multipart/alternative and serves its text/html part 2 (an inline body part).",
    },
    "mime_emails/raw_email_with_illegal_boundary.eml": {
        "part 2 bytes": "The same unquoted boundary with '=': Python has no part 2; Cyrus serves the text/html "
        "alternative.",
    },
    "mime_emails/raw_email_with_multipart_mixed_quoted_boundary.eml": {
        "subject": "Two Subject header fields: JMAP takes the last (RFC 8621 section 4.1.3), Python the first.",
    },
    "multipart_report_emails/multi_address_bounce1.eml": {
        "from": "From: MAILER-DAEMON@lvmail01.LL.com (Mail Delivery System): no display name but a comment "
        "after the address. RFC 8621 section 4.1.2.3 says to use that comment as the name ('Mail Delivery "
        "System'); Python ignores comments (None).",
    },
    "multipart_report_emails/multi_address_bounce2.eml": {
        "from": "As multi_address_bounce1.eml: the comment after the address is the name in JMAP "
        "(RFC 8621 section 4.1.2.3), ignored by Python.",
    },
    "plain_emails/mix_caps_content_type.eml": {
        "from": "From: Big Bug bb@bug.com (spaces in an unquoted local part). Python quotes the phrase into "
        "the local part ('\"Big Bug bb\"@bug.com'); Cyrus keeps the text ('Big Bug bb@bug.com').",
    },
    "plain_emails/raw_email_multiple_from.eml": {
        "from": "From: tim@powerupdev.com concierge@powerupdev.com (two addresses without a comma). Python "
        "keeps the first; Cyrus glues them ('tim@powerupdev.comconcierge@powerupdev.com').",
        "to": "To: has the same two addresses without a comma (see from).",
    },
    "plain_emails/raw_email_with_at_display_name.eml": {
        "to": "To: ..., Mikel@Lindsaar <raasdnil@gmail.com>, ...: an unquoted '@' in a display name. Python "
        "reads the address Mikel@Lindsaar and drops <raasdnil@gmail.com>; Cyrus makes two addresses of it.",
    },
}

#: Where the has_attachment filter (the ``$HasAttachment`` keyword the delivery script sets) and
#: the flag (the RFC 8621 ``attachments`` list) differ: {file: whether the filter selects it}.
#: Sieve cannot walk the MIME tree the way RFC 8621 section 4.1.4 does; the delivery script's
#: test is Cyrus's hasAttachment heuristic OR a part of a type never shown inline
#: (shipmail.mailserver.cyrus_server.NEVER_INLINE_TYPES).
FILTER_EXCEPTIONS: dict[str, bool] = {
    # An inline image in multipart/mixed after the text (no name, or a name: RFC 8621 puts inline
    # media in textBody/htmlBody, not attachments); Cyrus's heuristic counts an image of unknown
    # dimensions as an attachment ("false positive" in its source).
    "attachment_emails/attachment_content_location.eml": True,
    "attachment_emails/attachment_with_quoted_filename.eml": True,
    "mime_emails/raw_email12.eml": True,
    # The only part of a multipart/related, an image without disposition: inline (the first part
    # of a related is the body), counted by Cyrus's heuristic as above.
    "error_emails/missing_content_disposition.eml": True,
    # A named application/msword part in Content-Transfer-Encoding x-uuencode: Cyrus cannot decode
    # it (size 0, no blob id), so the API lists no attachment (nothing to download); Cyrus's
    # heuristic counts the name.
    "error_emails/content_transfer_encoding_x_uuencode.eml": True,
}

#: Exceptions that exist only when Cyrus keeps 8-bit header bytes (munge8bit: no).
KEPT_8BIT: dict[str, dict[str, str]] = {
    "rfc6532/utf8_headers.eml": {
        "from": "RFC 6532 address jdöe@mächine.example: Cyrus 3.6 ends the domain at its first non-ASCII "
        "character ('jdöe@m'); the display name is right.",
        "to": "märy@exämple.net becomes 'märy@ex' (see from).",
    },
}


def corpus_files() -> list[Path]:
    """Every file of the corpus (the 103 .eml files and the empty sample_output_multipart)."""
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "LICENSE")


def as_delivered(path: Path) -> bytes:
    """The bytes handed to LMTP: the file without its mbox ``From `` line."""
    raw = path.read_bytes()
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    return raw


def crlf(raw: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", raw)


def munged(raw: bytes) -> bytes:
    """Cyrus's munge8bit: every 8-bit byte of the top-level header becomes ``X``."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    return bytes(b if b < 0x80 else 0x58 for b in head) + sep + body


def without_return_path(raw: bytes) -> bytes:
    """``raw`` (CRLF) without its top-level ``Return-Path`` fields (continuation lines too)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and dropping:
            continue
        dropping = line.lower().startswith(b"return-path:")
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept) + sep + body


#: Header fields Cyrus prepends to every delivered message.
TRACE_FIELDS = {"Return-Path", "Received", "X-Sieve", "X-Cyrus-Session-Id"}


def field_names(head: bytes) -> list[str]:
    return [line.split(b":", 1)[0].decode() for line in head.split(b"\r\n") if line and line[:1] not in b" \t"]


def stored_parts(stored: bytes, delivered: bytes) -> tuple[list[str], list[str]] | None:
    """The names of the header fields the server put before and after the delivered header in
    ``stored``, when ``stored`` is ``delivered`` with only that added (its body unchanged); else None."""
    if not delivered:
        names = field_names(stored.split(b"\r\n\r\n", 1)[0])
        return [n for n in names if n in TRACE_FIELDS], [n for n in names if n not in TRACE_FIELDS]
    d_head, d_sep, d_body = delivered.partition(b"\r\n\r\n")
    s_head, s_sep, s_body = stored.partition(b"\r\n\r\n")
    if d_body != s_body or d_sep != s_sep:
        return None
    at = (b"\r\n" + s_head + b"\r\n").find(b"\r\n" + d_head + b"\r\n")
    if at < 0:
        return None
    return field_names(s_head[:at]), field_names(s_head[at + len(d_head) :])


def imapd_option(api: ApiEnv, name: str) -> str | None:
    for line in api.cyrus.instance.imapd_conf.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip().lower()
    return None


def off(value: str | None) -> bool:
    return value in ("0", "no", "off", "false")


def text(value: str) -> str:
    """Python's text of a header with surrogate-escaped 8-bit bytes, as UTF-8 (what it means)."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def py_subject(msg: Message) -> str | None:
    value = msg["subject"]
    return None if value is None else text(str(value))


def py_addresses(msg: Message, name: str) -> list[tuple[str | None, str | None]] | None:
    header: Any = msg[name]  # policy.default: an AddressHeader
    if header is None:
        return None
    return [(text(a.display_name) or None, text(a.addr_spec) or None) for a in header.addresses]


def api_addresses(value: list[dict[str, Any]] | None) -> list[tuple[str | None, str | None]] | None:
    return None if value is None else [(a["name"], a["email"]) for a in value]


def part_at(msg: Message, part_id: str) -> Message:
    """The part Cyrus's ``partId`` (an IMAP section number, RFC 3501) names in Python's tree."""
    current: Any = msg
    for step in part_id.split("."):
        n = int(step)
        if current.is_multipart():
            current = current.get_payload()[n - 1]
        elif current.get_content_maintype() == "message":
            inner = current.get_payload()[0]
            current = inner.get_payload()[n - 1] if inner.is_multipart() else inner
        elif n != 1:
            raise LookupError(part_id)
    result: Message = current
    return result


def test_every_corpus_message_through_the_api(api: ApiEnv) -> None:
    files = corpus_files()
    assert len(files) == 104
    kept_8bit = off(imapd_option(api, "munge8bit"))
    dedup = not off(imapd_option(api, "duplicatesuppression"))

    # Delivery: the n-th file of a Message-ID to the n-th mailbox when Cyrus drops duplicates.
    mailboxes: list[dict[str, Any]] = [new_mailbox(api, local="corpus")]
    placed: dict[int, int] = {}  # file index -> mailbox index
    seen_ids: dict[str, int] = defaultdict(int)
    raws: dict[int, bytes] = {}
    refused: dict[str, str] = {}
    for i, path in enumerate(files):
        raw = as_delivered(path)
        raws[i] = raw
        slot = 0
        if dedup:
            mid = email.message_from_bytes(raw, policy=policy.default)["message-id"]
            if mid:
                slot = seen_ids[str(mid).strip()]
                seen_ids[str(mid).strip()] += 1
        while len(mailboxes) <= slot:
            mailboxes.append(new_mailbox(api, local=f"corpus{len(mailboxes)}"))
        try:
            assert api.lmtp(mailboxes[slot]["address"], raw, sender=f"corpus-{i}@fixtures.test") == {}
            placed[i] = slot
        except smtplib.SMTPDataError as exc:
            assert (exc.smtp_code, exc.smtp_error) == (554, b"5.6.0 Message contains invalid header")
            refused[str(path.relative_to(CORPUS))] = str(exc.smtp_error)
    assert set(refused) == set(REFUSED)

    expected_exceptions = {**EXCEPTIONS, **(KEPT_8BIT if kept_8bit else {})}
    mismatches: dict[str, dict[str, tuple[Any, Any]]] = defaultdict(dict)
    filter_mismatches: dict[str, bool] = {}  # file: whether the filter selects it (the flag says otherwise)
    file_of: dict[str, str] = {}
    walked: set[int] = set()
    for m, mbx in enumerate(mailboxes):
        base = f"/v1/mailboxes/{mbx['id']}/inbox"
        # The list, every page (limit 17: several pages); no 5xx anywhere.
        listed: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 17}
            if cursor:
                params["cursor"] = cursor
            r = api.client.get(f"{base}/messages", params=params, headers=api.auth())
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["pagination"]["total"] == sum(1 for s in placed.values() if s == m)
            listed += page["data"]
            cursor = page["pagination"]["next_cursor"]
            if cursor is None:
                break
        assert len(listed) == sum(1 for s in placed.values() if s == m)
        assert len({item["id"] for item in listed}) == len(listed)

        threads: set[str] = set()
        flagged: set[str] = set()
        for item in listed:
            r = api.client.get(f"{base}/messages/{item['id']}", headers=api.auth())
            assert r.status_code == 200, r.text
            full = r.json()
            # The list item is the full message, its body values cut at the list's bound.
            assert {k: v for k, v in item.items() if k != "body_values"} == {
                k: v for k, v in full.items() if k != "body_values"
            }
            for part_id, value in item["body_values"].items():
                whole = full["body_values"][part_id]
                assert whole["value"].startswith(value["value"]) and len(value["value"].encode()) <= 32 * 1024
                assert value["is_truncated"] == (value["value"] != whole["value"] or whole["is_truncated"])
            assert "<" not in item["preview"] or "text/plain" in [p["type"] for p in item["text_body"]], item["preview"]
            return_path = next(h["value"] for h in full["headers"] if h["name"] == "Return-Path")
            match = re.search(r"corpus-(\d+)@fixtures\.test", return_path)
            assert match, return_path
            i = int(match.group(1))
            file_of[item["id"]] = str(files[i].relative_to(CORPUS))
            assert placed[i] == m and i not in walked
            walked.add(i)
            name = str(files[i].relative_to(CORPUS))
            source = crlf(raws[i]) if kept_8bit else munged(crlf(raws[i]))
            msg = email.message_from_bytes(source, policy=policy.default)

            found = mismatches[name]
            if py_subject(msg) != full["subject"]:
                found["subject"] = (py_subject(msg), full["subject"])
            for header in ("from", "to"):
                if py_addresses(msg, header) != api_addresses(full[header]):
                    found[header] = (py_addresses(msg, header), api_addresses(full[header]))
            # has_attachment is the attachments list's (RFC 8621), in the list and the message.
            assert full["has_attachment"] is bool(full["attachments"]), name
            if full["has_attachment"]:
                flagged.add(full["id"])
            # Every attachment and every body part (inline images of HTML mail too) downloads
            # with its own type and name, the bytes Python decodes.
            parts: dict[str, dict[str, Any]] = {}
            for p in full["text_body"] + full["html_body"]:
                parts.setdefault(p["part_id"], {**p, "content_type": p["type"], "attachment": False})
            for att in full["attachments"]:
                parts[att["part_id"]] = {**att, "attachment": True}
            for att in parts.values():
                label = "attachment" if att["attachment"] else "part"
                try:
                    part: Message | None = part_at(msg, att["part_id"])
                except (LookupError, IndexError, TypeError):
                    part = None
                if att["attachment"]:
                    py_name = part.get_filename() if part is not None else None
                    if (text(py_name) if py_name is not None else None) != att["name"]:
                        found[f"attachment {att['part_id']} name"] = (py_name, att["name"])
                if att["blob_id"] is None:  # Cyrus gives an empty body part no blob
                    assert att["download_path"] is None and att["size"] == 0, (name, att)
                    continue
                assert att["download_path"], (name, att)
                d = api.client.get(f"/v1{att['download_path']}", headers=api.auth())
                assert d.status_code < 500, d.text
                if part is None or d.status_code != 200:
                    found[f"{label} {att['part_id']} bytes"] = (part is not None, d.status_code)
                    continue
                assert d.headers["content-type"].split(";")[0] == att["content_type"], (name, att)
                served = att["name"] or ("attachment.eml" if att["content_type"] == "message/rfc822" else "attachment")
                assert d.headers["content-disposition"] == content_disposition(served), (name, att)
                assert len(d.content) == att["size"]
                if not att["attachment"] and att["content_type"].startswith("text/"):
                    continue  # a text body: its decoded text is the body value (compared above)
                if part.get_content_maintype() == "message":
                    # message/rfc822 and message/delivery-status: Python has no bytes for them
                    # (get_payload(decode=True) is None); the blob is the part's body as sent.
                    same = d.content in crlf(raws[i])
                else:
                    same = d.content == part.get_payload(decode=True)
                if not same:
                    found[f"{label} {att['part_id']} bytes"] = (
                        len(part.get_payload(decode=True) or b""),
                        len(d.content),
                    )

            # The original: what was delivered (smtplib ends the data with CRLF when the file does
            # not), with the header fields Cyrus adds (trace fields before; Message-ID and Date
            # after, when the message has none). As the final delivery (RFC 5321 section 4.4),
            # Cyrus drops the message's own Return-Path fields and writes the envelope's.
            r = api.client.get(f"{base}/messages/{item['id']}/raw", headers=api.auth())
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "message/rfc822" and len(r.content) == full["size"]
            raw_form = raws[i] if raws[i].endswith(b"\r\n") or not raws[i] else raws[i] + b"\r\n"
            delivered = without_return_path(crlf(raw_form) if kept_8bit else munged(crlf(raw_form)))
            split = stored_parts(r.content, delivered)
            if split is None:
                found["raw"] = (len(delivered), len(r.content))
            else:
                prepended, appended = split
                # Cyrus's trace fields first; Message-ID and Date it adds (at the end of the
                # header) when the message has none or an unparsable one.
                assert set(prepended) <= TRACE_FIELDS and "Return-Path" in prepended, (name, prepended)
                assert set(appended) <= {"Message-ID", "Date"}, (name, appended)
            if not found:
                del mismatches[name]

            # Its thread holds it.
            r = api.client.get(f"{base}/threads/{full['thread_id']}", headers=api.auth())
            assert r.status_code == 200, r.text
            assert item["id"] in [x["id"] for x in r.json()["data"]]
            threads.add(full["thread_id"])

        # The has_attachment filter selects the messages the flag marks (the delivery script's
        # approximation of RFC 8621's rule; the differences are documented in FILTER_EXCEPTIONS).
        filtered: set[str] = set()
        cursor = None
        while True:
            params = {"limit": 100, "has_attachment": "true"}
            if cursor:
                params["cursor"] = cursor
            r = api.client.get(f"{base}/messages", params=params, headers=api.auth())
            assert r.status_code == 200, r.text
            filtered |= {x["id"] for x in r.json()["data"]}
            cursor = r.json()["pagination"]["next_cursor"]
            if cursor is None:
                break
        for message_id in filtered ^ flagged:
            filter_mismatches[file_of[message_id]] = message_id in filtered

        # The thread list, every page, one entry per thread.
        listed_threads: list[str] = []
        cursor = None
        while True:
            params = {"limit": 13}
            if cursor:
                params["cursor"] = cursor
            r = api.client.get(f"{base}/threads", params=params, headers=api.auth())
            assert r.status_code == 200, r.text
            listed_threads += [t["id"] for t in r.json()["data"]]
            cursor = r.json()["pagination"]["next_cursor"]
            if cursor is None:
                break
        assert sorted(listed_threads) == sorted(threads)

    assert walked == set(placed)
    assert len(walked) + len(refused) == len(files)
    assert filter_mismatches == FILTER_EXCEPTIONS, "has_attachment filter and flag differ"
    unexplained = {
        f: {k: v for k, v in checks.items() if k not in expected_exceptions.get(f, {})}
        for f, checks in mismatches.items()
    }
    unexplained = {f: c for f, c in unexplained.items() if c}
    assert unexplained == {}, f"differences from Python's email package: {unexplained}"
    stale = {f: [k for k in checks if k not in mismatches.get(f, {})] for f, checks in expected_exceptions.items()}
    stale = {f: k for f, k in stale.items() if k}
    assert stale == {}, f"documented exceptions that no longer happen: {stale}"


def test_a_corpus_listing_costs_one_jmap_request(api: ApiEnv) -> None:
    mbx = new_mailbox(api, local="corpuscost")
    for path in corpus_files()[:30]:
        with contextlib.suppress(smtplib.SMTPDataError):
            api.lmtp(mbx["address"], as_delivered(path))
    url = f"/v1/mailboxes/{mbx['id']}/inbox/messages"
    api.client.get(url, headers=api.auth())
    before = jmap_requests(api)
    r = api.client.get(url, params={"limit": 10}, headers=api.auth())
    assert r.status_code == 200 and jmap_requests(api) - before == 1
    r2 = api.client.get(url, params={"limit": 10, "cursor": r.json()["pagination"]["next_cursor"]}, headers=api.auth())
    assert r2.status_code == 200 and jmap_requests(api) - before == 2


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_files_are_really_broken_for_python_too(name: str) -> None:
    """What Cyrus refuses, Python parses only with a header defect (no silent disagreement)."""
    msg = email.message_from_bytes(as_delivered(CORPUS / name), policy=policy.default)
    defects = list(msg.defects) + [d for h in msg for d in getattr(msg[h], "defects", ())]
    broken = any("Header" in type(d).__name__ or "Missing" in type(d).__name__ for d in defects)
    assert broken or any(" " in k.strip() or k != k.strip() for k in msg), (name, defects, msg.keys())
