"""Readers of import files: mbox (also gzip-compressed), ZIP (our own export, or any ZIP of
``.eml``/``.mbox`` files) and single ``.eml`` files, one message at a time.

Each reader yields :class:`SourceMessage` in a stable order, so a run can resume at a position
(the ``position`` of the last message handled). Only one message's bytes are in memory at once.

* mbox (RFC 4155; what Python's ``mailbox`` module, Thunderbird and Google Takeout write): a
  message starts at the first ``From `` line, then at each ``From `` line that follows a blank
  line and carries a time and a year (an unquoted "From here" in a body does not); ``>From ``
  quoting is undone (mboxrd: one ``>`` removed from ``>+From `` lines; for mboxo files, which
  quote only ``From ``, this is the same); the blank line before the next ``From `` belongs to the
  format, not the message. The received date is the ``From `` line's date (asctime), else the
  ``Date`` header. Flags come from ``Status``/``X-Status`` (``R`` seen, ``A`` answered, ``F``
  flagged, ``T`` draft; what Python's ``mailbox.mboxMessage`` writes) and Thunderbird's
  ``X-Mozilla-Status`` (0x1 read, 0x2 replied, 0x4 flagged, 0x1000 forwarded; 0x8, expunged but
  not yet compacted, is skipped). The folder is the file's name without ``.mbox``/``.gz``
  (Thunderbird keeps one folder per file: ``Inbox``, ``Sent``, ...), or the name the caller gives.
* ZIP with ``manifest.json`` of format ``shipmail.mailbox-export`` (:mod:`shipmail.exports.archive`):
  the manifest's messages with their folders, roles, keywords and received dates; a message held
  by several folders is one message with every folder.
* any other ZIP: every ``.eml`` file (its directories are the folder path; none: Inbox) and every
  ``.mbox`` file (read as above; its path without ``.mbox`` is the folder), in name order.
* a single ``.eml``: into Inbox, received at its ``Date`` header (else now).

Line ends become CRLF (JMAP ``Email/import`` on Cyrus refuses bare LF); bytes are otherwise kept.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from shipmail.exports import archive

#: Largest message imported; bigger ones are skipped and counted as oversize.
MAX_MESSAGE_BYTES = 50 * 1024 * 1024

_FROM_QUOTED = re.compile(rb"^>(>*From )")
#: A ``From `` line that separates messages: a sender, then a time and a year (asctime, with or
#: without a zone: Python's mailbox, Thunderbird, Google Takeout).
_SEPARATOR = re.compile(rb"^From \S*\s.*\b\d{1,2}:\d\d(:\d\d)?\b.*\b\d{4}\b")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_MOZ_EXPUNGED = 0x0008


@dataclass
class SourceMessage:
    """One message read from a source. ``raw`` is None when it was skipped before upload
    (``problem`` says why; ``oversize`` for messages over :data:`MAX_MESSAGE_BYTES`)."""

    position: int
    folders: list[tuple[list[str], str | None]]
    raw: bytes | None
    keywords: list[str] = field(default_factory=list)
    received_at: datetime | None = None
    problem: str | None = None
    oversize: bool = False
    size: int = 0


def crlf(raw: bytes) -> bytes:
    """``raw`` with every bare LF made CRLF."""
    return _BARE_LF.sub(b"\r\n", raw)


def _header_block(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[:end]


def header_value(raw: bytes, name: bytes) -> bytes | None:
    """The first ``name`` header's unfolded value in ``raw`` (CRLF message), or None."""
    pattern = re.compile(rb"(?im)^" + re.escape(name) + rb"[ \t]*:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)")
    match = pattern.search(_header_block(raw))
    return re.sub(rb"\r\n[ \t]", b" ", match.group(1)).strip() if match else None


def message_id(raw: bytes) -> str | None:
    """The Message-ID without angle brackets, as JMAP's ``messageId`` shows it."""
    value = header_value(raw, b"Message-ID")
    if not value:
        return None
    match = re.search(rb"<([^<>\s]+)>", value)
    text = (match.group(1) if match else value.split()[0]).decode("utf-8", "replace")
    return text or None


def problem_of(raw: bytes) -> str | None:
    """Why ``raw`` (CRLF) cannot be a message, or None. The mail server checks the rest."""
    if not raw.strip():
        return "empty message"
    first = raw.split(b"\r\n", 1)[0]
    if not re.match(rb"^[!-9;-~]+[ \t]*:", first):
        return "no header block: the first line is not a header field"
    return None


def _date_header(raw: bytes) -> datetime | None:
    value = header_value(raw, b"Date")
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value.decode("ascii", "replace"))
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _from_line_date(line: bytes) -> datetime | None:
    parts = line.decode("ascii", "replace").split()
    # From <sender> <Www Mmm dd hh:mm:ss yyyy> [zone]
    for start in range(2, min(len(parts), 4)):
        text = " ".join(parts[start : start + 5])
        try:
            return datetime.strptime(text, "%a %b %d %H:%M:%S %Y").replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _flags(raw: bytes) -> tuple[list[str], bool]:
    """(keywords, expunged) from Status/X-Status/X-Mozilla-Status."""
    keywords: set[str] = set()
    status = (header_value(raw, b"Status") or b"").decode("ascii", "replace")
    x_status = (header_value(raw, b"X-Status") or b"").decode("ascii", "replace")
    if "R" in status:
        keywords.add("$seen")
    if "A" in x_status:
        keywords.add("$answered")
    if "F" in x_status:
        keywords.add("$flagged")
    if "T" in x_status:
        keywords.add("$draft")
    expunged = False
    moz = header_value(raw, b"X-Mozilla-Status")
    if moz:
        try:
            bits = int(moz.decode("ascii", "replace").strip(), 16)
        except ValueError:
            bits = 0
        if bits & 0x0001:
            keywords.add("$seen")
        if bits & 0x0002:
            keywords.add("$answered")
        if bits & 0x0004:
            keywords.add("$flagged")
        if bits & 0x1000:
            keywords.add("$forwarded")
        expunged = bool(bits & _MOZ_EXPUNGED)
    return sorted(keywords), expunged


def _finish(
    position: int, folders: list[tuple[list[str], str | None]], raw: bytes, *, from_line: bytes | None = None
) -> SourceMessage:
    if len(raw) > MAX_MESSAGE_BYTES:
        return SourceMessage(position, folders, None, problem="larger than 50 MiB", oversize=True, size=len(raw))
    raw = crlf(raw)
    problem = problem_of(raw)
    if problem is not None:
        return SourceMessage(position, folders, None, problem=problem, size=len(raw))
    keywords, _ = _flags(raw) if from_line is not None else ([], False)
    received = (_from_line_date(from_line) if from_line else None) or _date_header(raw)
    return SourceMessage(position, folders, raw, keywords=keywords, received_at=received, size=len(raw))


def folder_of_name(name: str) -> list[str]:
    """The folder path of an mbox file name (``Sent.mbox``, ``Archives/2020.mbox.gz``)."""
    stem = name
    for suffix in (".gz", ".mbox", ".mbx"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    parts = [p for p in re.split(r"[/\\]", stem) if p]
    # Thunderbird keeps subfolders of "A" in "A.sbd/".
    parts = [p[:-4] if p.lower().endswith(".sbd") else p for p in parts]
    return parts or ["Inbox"]


def read_mbox(stream: IO[bytes], folder: list[str], start: int = 0) -> Iterator[SourceMessage]:
    """The messages of an mbox stream (see the module docstring), positions counted from ``start``."""
    position = start
    lines: list[bytes] = []
    size = 0
    from_line: bytes | None = None
    previous_blank = True
    folders: list[tuple[list[str], str | None]] = [(folder, None)]
    for line in stream:
        if line.startswith(b"From ") and (from_line is None or (previous_blank and _SEPARATOR.match(line))):
            if from_line is not None:
                yield _mbox_message(position, folders, lines, from_line, size)
                position += 1
            from_line, lines, size = line, [], 0
            previous_blank = False
            continue
        previous_blank = line in (b"\n", b"\r\n")
        if from_line is None:
            continue  # text before the first From line: not a message
        if size <= MAX_MESSAGE_BYTES:
            lines.append(_FROM_QUOTED.sub(rb"\1", line))
        size += len(line)
    if from_line is not None:
        yield _mbox_message(position, folders, lines, from_line, size)


def _mbox_message(
    position: int, folders: list[tuple[list[str], str | None]], lines: list[bytes], from_line: bytes, size: int
) -> SourceMessage:
    if size > MAX_MESSAGE_BYTES:
        return SourceMessage(position, folders, None, problem="larger than 50 MiB", oversize=True, size=size)
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]  # the blank line before the next From line
    raw = b"".join(lines)
    message = _finish(position, folders, raw, from_line=from_line)
    if message.raw is not None:
        _, expunged = _flags(message.raw)
        if expunged:
            message.raw = None
            message.problem = "expunged (X-Mozilla-Status)"
    return message


def _open_maybe_gzip(stream: IO[bytes]) -> IO[bytes]:
    head = stream.read(2)
    stream.seek(0)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    return stream


def detect(path: Path) -> str:
    """``zip``, ``mbox`` or ``eml`` by the file's first bytes (gzip: mbox)."""
    with open(path, "rb") as fh:
        head = fh.read(5)
    if head[:4] == b"PK\x03\x04" or head[:4] == b"PK\x05\x06":
        return "zip"
    if head[:2] == b"\x1f\x8b" or head == b"From ":
        return "mbox"
    return "eml"


def read_file(path: Path, file_name: str, start: int = 0) -> Iterator[SourceMessage]:
    """Every message of the staged file at ``path`` (named ``file_name`` by the uploader) from
    position ``start`` on."""
    kind = detect(path)
    if kind == "mbox":
        with open(path, "rb") as raw:
            stream = _open_maybe_gzip(raw)
            for message in read_mbox(stream, folder_of_name(file_name)):
                if message.position >= start:
                    yield message
        return
    if kind == "eml":
        if start > 0:
            return
        data = path.read_bytes() if path.stat().st_size <= MAX_MESSAGE_BYTES else None
        if data is None:
            yield SourceMessage(0, [(["Inbox"], "inbox")], None, problem="larger than 50 MiB", oversize=True)
            return
        message = _finish(0, [(["Inbox"], "inbox")], data)
        if message.raw is not None and message.received_at is None:
            message.received_at = None
        yield message
        return
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        yield SourceMessage(0, [(["Inbox"], "inbox")], None, problem="not a readable ZIP file")
        return
    with zf:
        names = set(zf.namelist())
        if archive.MANIFEST in names:
            manifest = _manifest(zf)
            if manifest is not None:
                yield from _read_export(zf, manifest, start)
                return
        yield from _read_plain_zip(zf, start)


def _manifest(zf: zipfile.ZipFile) -> dict[str, Any] | None:
    try:
        with zf.open(archive.MANIFEST) as fh:
            data = json.load(fh)
    except (ValueError, OSError, zipfile.BadZipFile):
        return None
    if not isinstance(data, dict) or data.get("format") != archive.FORMAT:
        return None
    return data


def _read_export(zf: zipfile.ZipFile, manifest: dict[str, Any], start: int) -> Iterator[SourceMessage]:
    folders = [
        (list(map(str, f.get("path") or [])), f.get("role") if isinstance(f.get("role"), str) else None)
        for f in manifest.get("folders") or []
    ]
    grouped: dict[str, list[dict[str, Any]]] = {}
    order: list[str] = []
    for entry in manifest.get("messages") or []:
        key = str(entry.get("email_id") or entry.get("file"))
        if key not in grouped:
            grouped[key] = []
            order.append(key)
        grouped[key].append(entry)
    for position, key in enumerate(order):
        if position < start:
            continue
        entries = grouped[key]
        first = entries[0]
        targets = []
        for entry in entries:
            index = entry.get("folder")
            if isinstance(index, int) and 0 <= index < len(folders):
                targets.append(folders[index])
        targets = targets or [(["Inbox"], "inbox")]
        try:
            info = zf.getinfo(str(first.get("file")))
        except KeyError:
            yield SourceMessage(position, targets, None, problem="file missing from the ZIP")
            continue
        if info.file_size > MAX_MESSAGE_BYTES:
            yield SourceMessage(
                position, targets, None, problem="larger than 50 MiB", oversize=True, size=info.file_size
            )
            continue
        message = _finish(position, targets, zf.read(info))
        if message.raw is not None:
            message.keywords = [str(k) for k in first.get("keywords") or [] if isinstance(k, str)]
            received = first.get("received_at")
            if isinstance(received, str):
                with contextlib.suppress(ValueError):
                    message.received_at = datetime.fromisoformat(received.replace("Z", "+00:00"))
        yield message


def _read_plain_zip(zf: zipfile.ZipFile, start: int) -> Iterator[SourceMessage]:
    position = 0
    for info in sorted(zf.infolist(), key=lambda i: i.filename):
        name = info.filename
        if info.is_dir() or "__MACOSX" in name.split("/"):
            continue
        lower = name.lower()
        if lower.endswith(".eml"):
            if position >= start:
                parts = [archive.unsegment(p) for p in name.split("/")[:-1] if p]
                if parts and parts[0] == archive.MAIL_DIR:
                    parts = parts[1:]
                target: list[tuple[list[str], str | None]] = [(parts or ["Inbox"], None)]
                if info.file_size > MAX_MESSAGE_BYTES:
                    yield SourceMessage(position, target, None, problem="larger than 50 MiB", oversize=True)
                else:
                    yield _finish(position, target, zf.read(info))
            position += 1
        elif lower.endswith((".mbox", ".mbx", ".mbox.gz")):
            with zf.open(info) as raw:
                data: IO[bytes] = raw
                if lower.endswith(".gz"):
                    data = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
                last = position - 1
                for message in read_mbox(data, folder_of_name(name), position):
                    last = message.position
                    if message.position >= start:
                        yield message
                position = last + 1
