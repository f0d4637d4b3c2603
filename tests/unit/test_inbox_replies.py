"""Quote stripping of ``reply_text`` (:mod:`shipmail.inbox.replies`) on the shared real-world
corpus: forwards lose what they forward, mail that quotes nothing keeps its whole text."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest

from shipmail.inbox.replies import strip_quotes

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
    # Python's email package reads example13's obsolete header syntax (RFC 5322 section 4.5) as
    # body text: a body that starts with a header block reads as a forwarded message's.
    header_block = "rfc2822/example13.eml"
    assert forwards and set(changed) == forwards | {header_block}
    assert changed[header_block].startswith("To    : Mary Smith")
    for name in forwards:
        assert changed[name] == texts[name].replace("\r\n", "\n").split(FORWARD)[0].strip()


def test_reply_headers_and_trailing_quotes_are_cut() -> None:
    assert (
        strip_quotes("Yes.\r\n\r\nAm 05.01.2026 um 10:00 schrieb Ann <a@example.org>:\r\n> Wollen wir?\r\n") == "Yes."
    )
    assert strip_quotes("\n\n  Fine.\n\n> Shall we?\n>\n") == "  Fine."
    assert strip_quotes("> only a quote\n") == "> only a quote"
