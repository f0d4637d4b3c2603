"""The IMAP source of an import: every folder of another IMAP server (RFC 9051/3501) read with
the standard library's :mod:`imaplib` (run in a worker thread; one connection per import).

* Connection: port 993 is implicit TLS; any other port starts with plain IMAP and upgrades with
  STARTTLS when the server offers it (certificates checked with the system's trust store).
* Folders: ``LIST "" "*"``; names are decoded from IMAP modified UTF-7 (RFC 3501 section
  5.1.3) and split at the server's delimiter. ``\\Noselect``/``\\NonExistent`` folders and the
  virtual ``\\All``/``\\Flagged`` folders (RFC 6154; Gmail's All Mail repeats every message) are
  skipped; ``\\Sent``, ``\\Drafts``, ``\\Trash``, ``\\Junk``, ``\\Archive`` give the role, and
  ``INBOX`` is the inbox.
* Messages: ``EXAMINE`` (read-only: nothing changes on the source), ``UID SEARCH ALL``, then
  ``UID FETCH <uids> (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])`` in batches.
  ``INTERNALDATE`` is the received date; ``\\Seen``, ``\\Answered``, ``\\Flagged``, ``\\Draft``
  become JMAP keywords, other keywords are kept lower-cased; ``\\Deleted`` messages are skipped.
  A position is (folder, UIDVALIDITY, UID): a resumed import continues after the last UID it
  stored, unless the folder's UIDVALIDITY changed (then the folder is read again; duplicates are
  recognised and skipped).
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import re
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

#: Seconds an IMAP command may take.
TIMEOUT = 60.0

_LIST = re.compile(rb'^\((?P<flags>[^)]*)\)\s+(?P<delim>"(?:[^"\\]|\\.)*"|NIL)\s+(?P<name>.*)$', re.IGNORECASE)
_ROLES = {b"\\sent": "sent", b"\\drafts": "drafts", b"\\trash": "trash", b"\\junk": "junk", b"\\archive": "archive"}
_SKIP = {b"\\noselect", b"\\nonexistent", b"\\all", b"\\flagged"}
_SYSTEM_FLAGS = {b"\\seen": "$seen", b"\\answered": "$answered", b"\\flagged": "$flagged", b"\\draft": "$draft"}


class ImapSourceError(Exception):
    """The source server refused or failed (the message says how, without the password)."""


@dataclass(frozen=True)
class ImapFolder:
    name: str  # as the server spells it (modified UTF-7), for SELECT
    path: list[str]  # decoded names
    role: str | None


@dataclass(frozen=True)
class ImapMessage:
    uid: int
    raw: bytes
    keywords: list[str]
    received_at: datetime | None
    deleted: bool


def decode_utf7(name: bytes) -> str:
    """An IMAP modified UTF-7 mailbox name (RFC 3501 section 5.1.3) as text."""
    out: list[str] = []
    i = 0
    text = name.decode("ascii", "replace")
    while i < len(text):
        if text[i] == "&":
            end = text.find("-", i)
            if end < 0:
                out.append(text[i:])
                break
            chunk = text[i + 1 : end]
            if not chunk:
                out.append("&")
            else:
                b64 = chunk.replace(",", "/")
                b64 += "=" * (-len(b64) % 4)
                try:
                    out.append(base64.b64decode(b64).decode("utf-16-be"))
                except (ValueError, UnicodeDecodeError):
                    out.append("&" + chunk + "-")
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _unquote(value: bytes) -> bytes:
    if value.startswith(b'"') and value.endswith(b'"'):
        return re.sub(rb"\\(.)", rb"\1", value[1:-1])
    return value


class ImapReader:
    """One connection to the source server (blocking: call it from a worker thread)."""

    def __init__(self, host: str, port: int, login: str, password: str) -> None:
        self.host = host
        self.port = port
        self._login = login
        self._password = password
        self._conn: imaplib.IMAP4 | None = None

    def connect(self) -> None:
        try:
            if self.port == 993:
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    self.host, self.port, ssl_context=ssl.create_default_context(), timeout=TIMEOUT
                )
            else:
                conn = imaplib.IMAP4(self.host, self.port, timeout=TIMEOUT)
                if "STARTTLS" in conn.capabilities:
                    conn.starttls(ssl.create_default_context())
            conn.login(self._login, self._password)
        except imaplib.IMAP4.error:
            raise ImapSourceError("The source server refused the login.") from None
        except (OSError, ssl.SSLError) as exc:
            raise ImapSourceError(f"Could not connect to {self.host}:{self.port} ({type(exc).__name__}).") from None
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                self._conn.logout()
            self._conn = None

    @property
    def conn(self) -> imaplib.IMAP4:
        if self._conn is None:
            self.connect()
        assert self._conn is not None
        return self._conn

    def _ok(self, what: str, typ: str, data: Sequence[object]) -> Sequence[object]:
        if typ != "OK":
            raise ImapSourceError(f"The source server refused {what}.")
        return data

    def folders(self) -> list[ImapFolder]:
        """Every selectable folder, sorted by name (a stable order for resuming)."""
        typ, data = self.conn.list('""', "*")
        found: list[ImapFolder] = []
        for item in self._ok("LIST", typ, data):
            line: bytes
            if isinstance(item, tuple):
                line = item[0] + b'"' + item[1].replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
            elif isinstance(item, bytes):
                line = item
            else:
                continue
            match = _LIST.match(line)
            if match is None:
                continue
            flags = {f.lower() for f in match.group("flags").split()}
            if flags & _SKIP:
                continue
            delim = _unquote(match.group("delim")) if match.group("delim").upper() != b"NIL" else b""
            raw_name = _unquote(match.group("name").strip())
            name = decode_utf7(raw_name)
            path = [p for p in name.split(delim.decode())] if delim else [name]
            role = next((r for f, r in _ROLES.items() if f in flags), None)
            if name.upper() == "INBOX":
                role, path = "inbox", ["Inbox"]
            found.append(ImapFolder(name=raw_name.decode("ascii", "replace"), path=path, role=role))
        return sorted(found, key=lambda f: f.name)

    def _quoted(self, name: str) -> str:
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def uids(self, folder: ImapFolder) -> tuple[int, list[int]]:
        """(UIDVALIDITY, every UID) of ``folder``, opened read-only."""
        typ, data = self.conn.select(self._quoted(folder.name), readonly=True)
        self._ok(f"to open the folder {folder.name!r}", typ, data)
        validity_raw = self.conn.untagged_responses.get("UIDVALIDITY", [b"0"])[-1]
        validity = int(validity_raw) if isinstance(validity_raw, (bytes, str)) and validity_raw.isdigit() else 0
        typ, data = self.conn.uid("SEARCH", "ALL")
        found = self._ok("SEARCH", typ, data)
        uids = sorted(int(u) for part in found if isinstance(part, bytes) for u in part.split())
        return validity, uids

    def fetch(self, uids: list[int]) -> list[ImapMessage]:
        """The messages ``uids`` of the open folder (those that still exist), in UID order."""
        if not uids:
            return []
        typ, data = self.conn.uid("FETCH", ",".join(map(str, uids)), "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        out: list[ImapMessage] = []
        for item in self._ok("FETCH", typ, data):
            if not isinstance(item, tuple):
                continue
            meta, raw = item[0], item[1]
            uid_match = re.search(rb"UID (\d+)", meta)
            if uid_match is None:
                continue
            flags_match = re.search(rb"FLAGS \(([^)]*)\)", meta)
            flags = flags_match.group(1).split() if flags_match else []
            keywords: list[str] = []
            deleted = False
            for flag in flags:
                low = flag.lower()
                if low == b"\\deleted":
                    deleted = True
                elif low in _SYSTEM_FLAGS:
                    keywords.append(_SYSTEM_FLAGS[low])
                elif not low.startswith(b"\\"):
                    keywords.append(low.decode("ascii", "replace"))
            received = None
            stamp = imaplib.Internaldate2tuple(meta)
            if stamp is not None:
                received = datetime.fromtimestamp(time.mktime(stamp), UTC)  # a local struct_time
            out.append(
                ImapMessage(
                    uid=int(uid_match.group(1)),
                    raw=raw,
                    keywords=sorted(set(keywords)),
                    received_at=received,
                    deleted=deleted,
                )
            )
        return sorted(out, key=lambda m: m.uid)
