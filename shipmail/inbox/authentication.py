"""A message's authentication results (the reference's ``EmailAuthenticationResults``) and its
content-scan state (Shipmail SDK 0.6.7's ``InboxMessageSecurity``).

Source: the reference ``InboxFullMessage.authentication_results`` and the SDK's ``security`` key of
``InboxFullMessage``.

Authentication results
    Neither Cyrus nor this service verifies SPF, DKIM or DMARC of inbound mail: the MTA in front of
    the LMTP port does (Postfix with OpenDKIM/OpenDMARC, rspamd, ...) and records its verdicts in an
    ``Authentication-Results`` header (RFC 8601). Any sender can write such a header too, so only
    a header whose authserv-id is one the operator trusts counts (``SHIPMAIL_AUTHSERV_IDS``,
    default the MX host name; RFC 8601 section 5: the border MTA removes forged ones with its own
    id). Of those, the topmost (the one added last) wins. It is parsed with ``authres`` (RFC 8601
    grammar); ``spf``, ``dkim`` and ``dmarc`` take that header's result of the method (``dkim``:
    ``pass`` when any signature passed, else the first signature's result), ``unknown`` when the
    method is absent or its result is not one of the reference's verdicts, ``none`` for a header
    that says ``none``. ``spam`` comes from the topmost ``X-Spam-Status`` (SpamAssassin:
    ``Yes|No, score=5.2 ...``; ``scoreMilli`` is the score times 1000). ``raw`` carries the values
    used (unfolded): the trusted ``Authentication-Results``, the topmost ``Received-SPF`` and
    ``X-Spam-Status``. With none of the three, the results are null.

Security
    No content scanner runs here: every message is ``not_scanned`` (no ``risk_codes``, no
    ``review``). ``content_sha256`` is the SHA-256 (hex) of the message's JMAP blob id, which the
    mail server derives from the exact stored bytes: it changes exactly when the content does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from typing import Any

import authres

from shipmail.jmap import email as jemail

#: The reference's ``EmailAuthVerdict`` values.
VERDICTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy", "unknown"})

#: SpamAssassin's ``X-Spam-Status: Yes, score=5.2 required=5.0 ...``.
_SPAM_STATUS = re.compile(r"^\s*(?P<verdict>yes|no)\b(?:.*?\bscore=(?P<score>-?\d+(?:\.\d+)?))?", re.I | re.S)


#: The header fields :func:`authentication_results` reads (lower case), by their slot in :func:`_read`.
_READ = {"authentication-results": 0, "received-spf": 1, "x-spam-status": 2}


def _read(headers: list[dict[str, Any]]) -> tuple[list[str], list[str], list[str]]:
    """The unfolded values of ``Authentication-Results``, ``Received-SPF`` and ``X-Spam-Status``
    (names case-insensitive), each topmost first: one pass over the header fields."""
    found: tuple[list[str], list[str], list[str]] = ([], [], [])
    for h in headers:
        slot = _READ.get(str(h.get("name", "")).lower())
        if slot is not None:
            found[slot].append(jemail.unfold(str(h.get("value") or "")))
    return found


def _trusted(values: list[str], authserv_ids: Collection[str]) -> tuple[str, Any] | None:
    """The first (topmost) value whose authserv-id is trusted, parsed; None when there is none."""
    for value in values:
        try:
            parsed = authres.AuthenticationResultsHeader.parse_value(value)
        except authres.AuthResError:
            continue
        if str(parsed.authserv_id or "").lower().rstrip(".") in authserv_ids:
            return value, parsed
    return None


def _verdict(results: list[Any], method: str) -> str:
    found = [str(r.result or "").lower() for r in results if str(r.method or "").lower() == method]
    if not found:
        return "unknown"
    if method == "dkim" and "pass" in found:
        return "pass"
    return found[0] if found[0] in VERDICTS else "unknown"


def _spam(value: str | None) -> dict[str, Any]:
    match = _SPAM_STATUS.match(value) if value else None
    if match is None:
        return {"isSpam": None, "scoreMilli": None}
    score = match.group("score")
    return {
        "isSpam": match.group("verdict").lower() == "yes",
        "scoreMilli": round(float(score) * 1000) if score is not None else None,
    }


def authentication_results(headers: list[dict[str, Any]], authserv_ids: Collection[str]) -> dict[str, Any] | None:
    """``EmailAuthenticationResults`` data of a message with the raw header fields ``headers``
    (JMAP ``headers``: ``{name, value}`` in message order), trusting the Authentication-Results
    of ``authserv_ids`` (lower case); None when the message has none of the headers it reads."""
    results, spf, spam = _read(headers)
    trusted = _trusted(results, authserv_ids)
    if trusted is None and not spf and not spam:
        return None
    if trusted is None:
        verdicts = dict.fromkeys(("spf", "dkim", "dmarc"), "unknown")
    elif not trusted[1].results:
        verdicts = dict.fromkeys(("spf", "dkim", "dmarc"), "none")
    else:
        verdicts = {m: _verdict(trusted[1].results, m) for m in ("spf", "dkim", "dmarc")}
    return {
        **verdicts,
        "spam": _spam(spam[0] if spam else None),
        "raw": {
            "authenticationResults": trusted[0] if trusted else None,
            "receivedSpf": spf[0] if spf else None,
            "spamStatus": spam[0] if spam else None,
        },
    }


def security(blob_id: str | None) -> dict[str, Any]:
    """``InboxMessageSecurity`` data of the message whose raw blob is ``blob_id``: not scanned."""
    return {
        "status": "not_scanned",
        "risk_codes": [],
        "scanner": "pattern_v1",
        "content_sha256": hashlib.sha256(str(blob_id or "").encode()).hexdigest(),
        "review": None,
    }
