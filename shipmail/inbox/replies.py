"""The new text of a reply without what it quotes (Shipmail SDK 0.6.7's ``reply_text`` of
``InboxFullMessage``).

Quoted parts are found by ``quotequail`` (Close's maintained quote detector): its ``unwrap`` finds
the reply or forward header that precedes a quotation (``On ... wrote:``, ``Am ... schrieb``,
``-----Original Message-----``, Outlook's ``From:/Sent:`` block, ``---------- Forwarded message``)
and returns the text above it and an answer below it (bottom posting). A message that quotes
without such a header ends with a block of ``>`` lines: that block is cut too. Text interleaved
with quotes (answers between ``>`` lines) is kept whole. Signatures are kept (they are the sender's new text).

Measured on ``../shared/corpus/mail-fixtures`` (81 messages with a plain-text body as Python's
email package reads them): the 4 forwards lose their forwarded part, the 2 bodies that begin with
a header block (one in RFC 5322's obsolete syntax, read as body; one pasted) read as forwards
(nothing, or header lines the parser garbled, is left), the other 75 keep their whole text
(``tests/unit/test_inbox_replies.py``). mail-parser-reply, the other candidate, strips every
line's indentation (49 changed) and cut 3 more messages short (a separator line, a pasted
header block).

Cost: quotequail tries each of its ~40 header patterns on every line in Python (30 ms of CPU for
32 KiB of text that quotes nothing); :func:`_unwrap_start` runs the same scan with the patterns as
one regex (2.7 ms), and ``unwrap`` only gets the text from where the quotation starts. An Email's
content never changes (RFC 8621 section 4.1: its ``blobId`` names its exact bytes), so
:func:`reply_text` keeps its answers in an LRU cache keyed by the blob, the part and the length of
the body value it was given (a list's bounded value and a message get's full one are different
entries), at most :data:`CACHE_CHARS` characters of answers: listing the same page again costs no
scan (it was a quarter of a 50-message page's API CPU).
"""

from __future__ import annotations

import re
from typing import Any

import quotequail
from cachetools import LRUCache
from quotequail import _internal, _patterns  # its scanning steps (private: the version is pinned <0.6)

from shipmail.inbox.preview import html_to_text, visible_text

_HTML = ("text/html", "application/xhtml+xml")
#: Characters of answers :func:`reply_text` keeps (about 16 MiB of text at most).
CACHE_CHARS = 8 * 1024 * 1024
_cache: LRUCache[tuple[str, str, str, int], str] = LRUCache(maxsize=CACHE_CHARS, getsizeof=lambda v: len(v) + 1)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")
#: quotequail's reply and forward header patterns, as one alternation.
_ANY_PATTERN = re.compile("|".join(f"(?:{p.pattern})" for p in _patterns.COMPILED_PATTERNS))


def _without_trailing_quote(text: str) -> str:
    """``text`` without a last block of ``>``-quoted (and blank) lines, unless that is all of it."""
    lines = text.splitlines()
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    if end == 0 or not any(line.lstrip().startswith(">") for line in lines[end:]):
        return text
    return "\n".join(lines[:end])


def _pattern_at(lines: list[str], n: int) -> bool:
    """quotequail's reply/forward header test at line ``n`` (``find_pattern_on_line``: the line,
    then joined with the next ones it may wrap onto), with all its patterns in one regex."""
    for m in range(_patterns.MAX_WRAP_LINES):
        line = _internal.join_wrapped_lines(lines[n : n + 1 + m])
        if line.startswith(">"):
            line = line[1:].strip()
        if not line:
            return False
        if _ANY_PATTERN.match(line.strip()):
            return True
    return False


def _quoted_at(lines: list[str], n: int) -> bool:
    """At least ``MIN_QUOTED_LINES`` ``>`` lines from line ``n`` on (blank lines skipped)."""
    count = 0
    for line in lines[n:]:
        if not line.strip():
            continue
        if not line.startswith(">"):
            return False
        count += 1
        if count >= _patterns.MIN_QUOTED_LINES:
            return True
    return False


def _unwrap_start(lines: list[str]) -> int | None:
    """The first line where ``quotequail.unwrap`` finds a quotation (its ``find_unwrap_start``:
    a reply/forward header, a quoted block, a header block), or None. The same tests in the same
    order, but the ~40 header patterns as one regex: about 40 times less CPU on text that quotes
    nothing (quotequail alone: 30 ms for 32 KiB)."""
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        if _pattern_at(lines, n):
            return n
        if line.startswith(">") and _quoted_at(lines, n):
            return n
        if _patterns.HEADER_RE.match(line):
            headers, _ = _internal.extract_headers(lines[n:], _patterns.MAX_WRAP_LINES)
            if len(headers) >= _patterns.MIN_HEADER_LINES:
                return n
    return None


def strip_quotes(text: str) -> str:
    """The new text of ``text`` (a plain-text body): what precedes a reply/forward header or a
    quoted block and what follows the quotation (bottom posting), or without a trailing ``>``
    block; CRs, leading blank lines and trailing white space removed (the first line's
    indentation is kept)."""
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    start = _unwrap_start(lines)
    unwrapped = quotequail.unwrap("\n".join(lines[start:])) if start is not None else None
    if unwrapped:
        top = "\n".join(lines[:start]).rstrip() if start else ""
        bottom = unwrapped.get("text_bottom")
        text = "\n\n".join(t for t in (top, bottom if isinstance(bottom, str) else "") if t.strip())
    else:
        text = _without_trailing_quote(text)
    return _LEADING_BLANK_LINES.sub("", text).rstrip()


def strip_html_quotes(html: str) -> str:
    """The new text of an HTML body: the part above its quotation (``quotequail.unwrap_html``:
    blockquotes and reply headers) rendered as text (:func:`~shipmail.inbox.preview.html_to_text`).
    ``unwrap_html`` (lxml, and quotequail's slow line scan) runs only when the HTML has a
    ``blockquote`` or its visible text, line by line, shows where a quotation starts
    (:func:`_unwrap_start`): HTML-only mail that quotes nothing (newsletters) costs one parse."""
    if "<blockquote" not in html.lower():
        lines = [line.strip() for line in visible_text(html, "\n").split("\n")]
        if _unwrap_start([line for line in lines if line]) is None:
            return html_to_text(html)
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
        if kind != "text/plain" and kind not in _HTML:
            continue
        blob = e.get("blobId")
        key = (blob, str(part.get("partId")), kind, len(value["value"])) if isinstance(blob, str) else None
        if key is not None and (cached := _cache.get(key)) is not None:
            return cached
        text = strip_quotes(value["value"]) if kind == "text/plain" else strip_html_quotes(value["value"])
        if key is not None and len(text) < CACHE_CHARS // 64:
            _cache[key] = text
        return text
    return None
