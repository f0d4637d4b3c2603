"""Quote stripping of ``reply_text`` (:mod:`shipmail.inbox.replies`) on the shared real-world
corpus: forwards lose what they forward, mail that quotes nothing keeps its whole text."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest

from shipmail.inbox import replies
from shipmail.inbox.replies import reply_text, strip_quotes

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "mail-fixtures"
FORWARD = "---------- Forwarded message ----------"


def _plain_texts() -> dict[str, str]:
    texts = {}
    for path in sorted(CORPUS.rglob("*.eml")):
        try:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            part = message.get_body(preferencelist=("plain",))
            text = part.get_content() if part is not None else None
        except (LookupError, ValueError, AttributeError, UnicodeError):
            continue
        if isinstance(text, str) and text.strip():
            texts[str(path.relative_to(CORPUS))] = text
    return texts


def test_corpus_forwards_lose_the_forwarded_part_and_the_rest_keep_their_text() -> None:
    texts = _plain_texts()
    if not texts:
        pytest.skip(f"no corpus at {CORPUS}")
    changed = {}
    for name, text in texts.items():
        kept = strip_quotes(text)
        normalised = re.sub(r"\A(?:[ \t]*\n)+", "", text.replace("\r\n", "\n")).rstrip()
        if kept != normalised:
            changed[name] = kept
    forwards = {name for name, text in texts.items() if FORWARD in text}
    # Bodies that start with a header block read as a forwarded message without new text:
    # example13's obsolete header syntax (RFC 5322 section 4.5), which Python's email package
    # reads as body text, and a message whose header block is pasted into its body.
    obsolete, pasted = "rfc2822/example13.eml", "plain_emails/raw_email_incorrect_header.eml"
    assert forwards and set(changed) == forwards | {obsolete, pasted}
    assert changed[obsolete].startswith("To    : Mary Smith") and changed[pasted] == ""
    for name in forwards:
        assert changed[name] == texts[name].replace("\r\n", "\n").split(FORWARD)[0].strip()


def test_reply_headers_and_trailing_quotes_are_cut() -> None:
    assert (
        strip_quotes("Yes.\r\n\r\nAm 05.01.2026 um 10:00 schrieb Ann <a@example.org>:\r\n> Wollen wir?\r\n") == "Yes."
    )
    assert strip_quotes("\n\n  Fine.\n\n> Shall we?\n>\n") == "  Fine."
    assert strip_quotes("> only a quote\n") == "> only a quote"


def test_the_fast_scan_finds_where_quotequail_does() -> None:
    """``_unwrap_start`` (quotequail's scan with its patterns as one regex) answers exactly as
    quotequail's own ``find_unwrap_start``, on the corpus and on typical replies."""
    from quotequail import _internal, _patterns

    from shipmail.inbox.replies import _unwrap_start

    samples = [
        *_plain_texts().values(),
        "Sounds good.\n\nOn Mon, Jan 5, 2026 at 10:00 AM Ann <a@example.org> wrote:\n> Shall we?\n",
        "Ok\n\nOn Mon, Jan 5, 2026 at 10:00 AM Ann <a@example.org>\nwrote:\n> wrapped header\n",
        "Yes.\n\n-----Original Message-----\nFrom: Ann\nSent: Monday\nSubject: Plan\n\nShall we?\n",
        "Yes.\n\nFrom: Ann <a@example.org>\nSent: Monday\nTo: Bob\nSubject: Plan\n\nShall we?\n",
        "Hi\n> a\n>\n> b\n> c\nbelow\n",
        "Note: one\nOther: two\nplain text\n",
        "> q1\nanswer\n> q2\nanswer2\n",
    ]
    for text in samples:
        lines = text.replace("\r\n", "\n").split("\n")
        found = _internal.find_unwrap_start(
            lines, _patterns.MAX_WRAP_LINES, _patterns.MIN_HEADER_LINES, _patterns.MIN_QUOTED_LINES
        )
        assert _unwrap_start(lines) == (found[0] if found else None), text[:200]


def test_bottom_posting_keeps_the_answer_below_the_quotation() -> None:
    assert strip_quotes("On Mon, Ann wrote:\n> a\n> b\n\nbottom answer\n") == "bottom answer"
    assert strip_quotes("top\n\nOn Mon, Ann wrote:\n> a\n> b\n\nbottom too\n") == "top\n\nbottom too"
    assert strip_quotes("Hi\n> a\n> b\n> c\nmy answer below\n") == "Hi\n\nmy answer below"


def test_reply_text_is_cached_per_blob_part_and_value_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer for one blob's part is computed once per body-value length: a second call with
    the same Email scans nothing, a longer (not truncated) value of the same part is its own entry,
    and an Email without a blobId is never cached."""
    full = "Yes, Tuesday works.\n\nOn Mon, 1 Jan 2024, Ann <ann@example.com> wrote:\n> Does Tuesday work?\n"
    short = full[:40]

    def email_of(value: str, blob: str | None) -> dict[str, object]:
        e: dict[str, object] = {
            "textBody": [{"partId": "1", "type": "text/plain"}],
            "bodyValues": {"1": {"value": value}},
        }
        if blob is not None:
            e["blobId"] = blob
        return e

    calls: list[str] = []
    real = replies.strip_quotes

    def counting(text: str) -> str:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(replies, "strip_quotes", counting)
    replies._cache.clear()
    blob = "G" + "ab" * 20
    assert reply_text(email_of(full, blob)) == "Yes, Tuesday works."
    assert reply_text(email_of(full, blob)) == "Yes, Tuesday works."
    assert len(calls) == 1
    assert reply_text(email_of(short, blob)) == real(short)
    assert len(calls) == 2
    reply_text(email_of(full, None))
    reply_text(email_of(full, None))
    assert len(calls) == 4
