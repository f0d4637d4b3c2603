"""Text previews of mail whose only body is HTML.

Cyrus 3.6 computes the JMAP ``preview`` (RFC 8621 section 4.1.4: up to 256 characters of the
text body) from the raw HTML when a message has no text/plain body (``"<HTML><HEAD> <TITLE>…"``).
:func:`preview` detects that case from the message's ``textBody`` (RFC 8621 puts HTML parts there
only when no plain-text alternative exists) and renders the preview from the HTML part's decoded
value, which the same Email/get already fetched (no extra JMAP round trip): the HTML is parsed
with selectolax (the Lexbor HTML5 parser, so entities are decoded the way browsers do), ``head``,
``script``, ``style``, ``template`` and ``noscript`` are dropped, the remaining text is joined
with spaces, white space is collapsed and the result is cut to :data:`PREVIEW_CHARS` characters.
"""

from __future__ import annotations

from typing import Any

from selectolax.lexbor import LexborHTMLParser

#: The longest preview, in characters (RFC 8621 section 4.1.4: "up to 256 characters").
PREVIEW_CHARS = 256

#: Elements whose text is never shown.
_HIDDEN = "head, script, style, template, noscript, title"

_HTML = ("text/html", "application/xhtml+xml")


def visible_text(html: str, separator: str = " ") -> str:
    """The text of ``html`` without its hidden elements (entities decoded), the text of each
    node joined with ``separator``; white space as it is."""
    tree = LexborHTMLParser(html)
    for node in tree.css(_HIDDEN):
        node.decompose()
    root = tree.body if tree.body is not None else tree.root
    return root.text(separator=separator) if root is not None else ""


def html_to_text(html: str) -> str:
    """The visible text of ``html``: hidden elements dropped, entities decoded, white space
    collapsed to single spaces, stripped."""
    return " ".join(visible_text(html).split())


def preview(email: dict[str, Any]) -> str:
    """The preview of the raw JMAP Email ``email``: the server's ``preview``, or for mail whose
    text body is HTML (no plain-text part), the text of that HTML (:func:`html_to_text`) cut to
    :data:`PREVIEW_CHARS` characters. Needs ``textBody`` (with ``type``) and ``bodyValues`` of the
    text body in ``email``; without them the server's preview is returned."""
    server = str(email.get("preview") or "")
    parts = email.get("textBody")
    values = email.get("bodyValues") or {}
    if not parts:
        return server
    types = [str(p.get("type") or "").lower() for p in parts]
    if "text/plain" in types or not any(t in _HTML for t in types):
        return server
    texts = []
    for part, kind in zip(parts, types, strict=True):
        value = values.get(str(part.get("partId")))
        if kind in _HTML and isinstance(value, dict) and isinstance(value.get("value"), str):
            texts.append(html_to_text(value["value"]))
    if not texts:
        return server
    return " ".join(t for t in texts if t)[:PREVIEW_CHARS]
