"""The new text of a reply without what it quotes (Shipmail SDK 0.6.7's ``reply_text`` of
``InboxFullMessage``).

Quoted parts are found by ``quotequail`` (Close's maintained quote detector): its ``unwrap`` finds
the reply or forward header that precedes a quotation (``On ... wrote:``, ``Am ... schrieb``,
``-----Original Message-----``, Outlook's ``From:/Sent:`` block, ``---------- Forwarded message``)
and returns the text above it. A message that quotes without such a header ends with a block of
``>`` lines: that block is cut too. Text interleaved with quotes (answers between ``>`` lines)
is kept whole. Signatures are kept (they are the sender's new text).

Measured on ``../shared/corpus/mail-fixtures`` (81 messages with a plain-text body as Python's
email package reads them): the 4 forwards lose their forwarded part, one body that begins with
a header block (RFC 5322 obsolete syntax read as body) keeps only that block's first lines (it reads
as a forwarded message), the other 76 keep their whole text (``tests/unit/test_inbox_replies.py``).
mail-parser-reply, the other candidate, strips every line's indentation (49 changed) and cut 3
more messages short (a separator line, a pasted header block).
"""

from __future__ import annotations

import re
from typing import Any

import quotequail

from shipmail.inbox.preview import html_to_text

_HTML = ("text/html", "application/xhtml+xml")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def _without_trailing_quote(text: str) -> str:
    """``text`` without a last block of ``>``-quoted (and blank) lines, unless that is all of it."""
    lines = text.splitlines()
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    if end == 0 or not any(line.lstrip().startswith(">") for line in lines[end:]):
        return text
    return "\n".join(lines[:end])


def strip_quotes(text: str) -> str:
    """The new text of ``text`` (a plain-text body): above a reply/forward header, or without a
    trailing ``>`` block; CRs, leading blank lines and trailing white space removed (the first
    line's indentation is kept)."""
    text = text.replace("\r\n", "\n")
    unwrapped = quotequail.unwrap(text)
    if unwrapped and isinstance(unwrapped.get("text_top"), str):
        text = unwrapped["text_top"]
    else:
        text = _without_trailing_quote(text)
    return _LEADING_BLANK_LINES.sub("", text).rstrip()


def strip_html_quotes(html: str) -> str:
    """The new text of an HTML body: the part above its quotation (``quotequail.unwrap_html``:
    blockquotes and reply headers) rendered as text (:func:`~shipmail.inbox.preview.html_to_text`)."""
    unwrapped = quotequail.unwrap_html(html)
    if unwrapped and isinstance(unwrapped.get("html_top"), str):
        html = unwrapped["html_top"]
    return html_to_text(html)


def reply_text(e: dict[str, Any]) -> str | None:
    """The ``reply_text`` of the raw JMAP Email ``e`` (with ``textBody`` and ``bodyValues``): the
    new text of its first text body part (plain text, or HTML for HTML-only mail); null when it
    has no text body."""
    values = e.get("bodyValues") or {}
    for part in e.get("textBody") or []:
        value = values.get(str(part.get("partId")))
        if not isinstance(value, dict) or not isinstance(value.get("value"), str):
            continue
        kind = str(part.get("type") or "").lower()
        if kind == "text/plain":
            return strip_quotes(value["value"])
        if kind in _HTML:
            return strip_html_quotes(value["value"])
    return None
