"""Which folder of the mailbox a source folder goes to.

A source folder is a path of names (``["[Gmail]", "Sent Mail"]``) and, when the source says so, a
JMAP role (our own export's manifest; an IMAP server's SPECIAL-USE flags, RFC 6154). It maps to a
system folder by that role, else by its name (any case, white space collapsed) among the common
names below, also under a leading ``INBOX`` (Courier and Dovecot's ``INBOX.Sent``); the rest of
the path becomes subfolders of it. Other folders keep their path; names the mail server cannot
store (:func:`clean_name`) have the offending characters replaced by ``_``.
"""

from __future__ import annotations

import unicodedata

from shipmail.folders.service import FORBIDDEN_CHARACTERS, MAX_NAME_LENGTH

#: Common names of the system folders (lower case), by JMAP role (RFC 8621 section 2; RFC 6154).
ROLE_NAMES: dict[str, frozenset[str]] = {
    "inbox": frozenset({"inbox"}),
    "sent": frozenset(
        {
            "sent",
            "sent items",
            "sent mail",
            "sent messages",
            "sent-mail",
            "[gmail]/sent mail",
            "[google mail]/sent mail",
            "gesendet",
            "gesendete elemente",
            "envoyés",
            "éléments envoyés",
            "enviados",
        }
    ),
    "drafts": frozenset({"drafts", "draft", "[gmail]/drafts", "[google mail]/drafts", "entwürfe", "brouillons"}),
    "trash": frozenset(
        {
            "trash",
            "deleted items",
            "deleted messages",
            "deleted",
            "bin",
            "[gmail]/trash",
            "[gmail]/bin",
            "[google mail]/trash",
            "[google mail]/bin",
            "papierkorb",
            "corbeille",
        }
    ),
    "junk": frozenset(
        {
            "junk",
            "spam",
            "junk e-mail",
            "junk email",
            "junk mail",
            "bulk mail",
            "[gmail]/spam",
            "[google mail]/spam",
        }
    ),
    "archive": frozenset({"archive", "archives", "archived"}),
}
ROLES = tuple(ROLE_NAMES)


def _norm(name: str) -> str:
    return " ".join(unicodedata.normalize("NFC", name).split()).casefold()


def role_by_name(path: list[str]) -> tuple[str | None, int]:
    """(role, how many leading path names it consumed) for a path whose start is a system folder
    by name; (None, 0) otherwise. The longest match wins (``[Gmail]/Sent Mail`` over ``[Gmail]``)."""
    if len(path) > 1 and _norm(path[0]) == "inbox":
        below, used = role_by_name(path[1:])
        if below is not None and below != "inbox":
            return below, used + 1
    for length in range(min(len(path), 2), 0, -1):
        joined = _norm("/".join(path[:length]))
        for role, names in ROLE_NAMES.items():
            if joined in names:
                return role, length
    return None, 0


def target(path: list[str], role: str | None) -> tuple[str, list[str]] | tuple[None, list[str]]:
    """(system role or None, the folder names to create below it or at the top level)."""
    if role in ROLES:
        return role, []
    found, used = role_by_name(path)
    if found is not None:
        return found, [clean_name(p) for p in path[used:]]
    return None, [clean_name(p) for p in path]


def clean_name(name: str) -> str:
    """``name`` made storable: NFC, forbidden characters and controls as ``_``, trimmed, at most
    :data:`MAX_NAME_LENGTH` characters, never empty."""
    text = unicodedata.normalize("NFC", name)
    text = "".join(
        "_" if ch in FORBIDDEN_CHARACTERS or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") else ch for ch in text
    )
    text = text.strip()[:MAX_NAME_LENGTH].strip()
    return text or "_"
