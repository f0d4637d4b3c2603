"""The export archive format (``format_version`` 1): what :mod:`shipmail.exports.service` writes
and :mod:`shipmail.imports.sources` reads back.

A ZIP file (ZIP64 when large)::

    manifest.json
    mail/<folder>/<sub folder>/000001.eml     one RFC 5322 message per file, bytes as stored
    mbox/<folder>/<sub folder>.mbox           the same messages as one mboxrd file per folder

* Folder names become path segments percent-encoded where a file system or ZIP tool would
  misread them (:func:`segment`: ``%``, ``/``, ``\\``, control characters, ``<>:"|?*``, a
  leading ``.``); :func:`unsegment` reverses it. The manifest is the authority, the tree is for
  people.
* ``manifest.json``: ``{"format": "shipmail.mailbox-export", "format_version": 1, "mailbox":
  <address>, "exported_at": <RFC 3339>, "folders": [{"path": [names], "role": <JMAP role or
  null>, "dir": "mail/...", "mbox": "mbox/....mbox", "messages": <count>}], "messages":
  [{"file": "mail/.../000001.eml", "folder": <index into folders>, "email_id": <JMAP id>,
  "keywords": [...], "received_at": <RFC 3339 UTC>, "size": <bytes>}]}``. A message held by
  several folders has one file (and one entry) per folder, with the same ``email_id``.
* mbox files (RFC 4155 "mboxrd"): ``From MAILER-DAEMON <asctime of received_at>`` lines, LF line
  ends, every ``From `` line of the message (after any number of ``>``) quoted with one more
  ``>``, a blank line after each message.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import unquote

FORMAT = "shipmail.mailbox-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAIL_DIR = "mail"
MBOX_DIR = "mbox"

_UNSAFE = re.compile(r'[%/\\<>:"|?*\x00-\x1f\x7f]')
_FROM_LINE = re.compile(rb"^>*From ")


def segment(name: str) -> str:
    """``name`` as one path segment (see the module docstring); never empty, ``.`` or ``..``."""
    text = _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)
    if text.startswith("."):
        text = "%2E" + text[1:]
    return text or "%"  # "%" alone cannot come from a name: every "%" of one is encoded


def unsegment(text: str) -> str:
    """The folder name :func:`segment` encoded as ``text``."""
    return "" if text == "%" else unquote(text)


def folder_dir(path: list[str]) -> str:
    return "/".join([MAIL_DIR, *(segment(p) for p in path)])


def mbox_name(path: list[str]) -> str:
    return "/".join([MBOX_DIR, *(segment(p) for p in path)]) + ".mbox"


def from_line(received_at: datetime | None) -> bytes:
    """The mbox separator line for a message received at ``received_at``."""
    moment = (received_at or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC)
    return f"From MAILER-DAEMON {moment.strftime('%a %b %d %H:%M:%S %Y')}\n".encode()


class MboxQuoter:
    """Turns a message's bytes, fed chunk by chunk, into its mboxrd body: LF line ends and ``From ``
    lines quoted. Memory: one line."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + chunk
        head, sep, self._carry = data.rpartition(b"\n")
        if not sep:
            self._carry = data
            return b""
        return b"".join(self._line(line) + b"\n" for line in head.split(b"\n"))

    @staticmethod
    def _line(line: bytes) -> bytes:
        line = line.removesuffix(b"\r")
        return b">" + line if _FROM_LINE.match(line) else line

    def close(self) -> bytes:
        """The rest, ending with the blank line that closes the message."""
        tail = self._line(self._carry) + b"\n" if self._carry else b""
        self._carry = b""
        return tail + b"\n"
