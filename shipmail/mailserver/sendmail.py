#!/usr/bin/python3
"""The ``sendmail`` program Cyrus runs for outgoing mail: a tiny SMTP server on stdin/stdout.

Cyrus (``smtp_backend: sendmail``) runs ``<program> -bs`` as user ``cyrus`` whenever it sends mail
(sieve vacation replies and redirects, JMAP EmailSubmission) and even on every GET of the JMAP
session, and then SPEAKS SMTP over the pipe (RFC 5321 section 4.5.1 minimum). This program answers
like an SMTP server and, for each message received:

* without a relay: writes it as one ``.eml`` file into the outbox directory (written to a hidden
  temporary file, fsync'ed, then renamed, so a reader never sees a partial file). Name:
  ``<UTC time %Y%m%dT%H%M%S.%fZ>-<pid>-<8 hex>.eml``. Two headers are prepended to carry the
  envelope, which the message itself does not hold: ``X-Envelope-From: <sender>`` and
  ``X-Envelope-To: <rcpt>,`` folded onto one line per further ``<rcpt>``. Line endings are
  CRLF as received.
* with a relay ``host:port`` (``[v6addr]:port`` for IPv6): hands it to that SMTP server with
  :mod:`smtplib` (no TLS, no auth: meant for a local MTA); a relay failure answers ``451``.

It is STANDARD LIBRARY ONLY and runs with the system ``/usr/bin/python3``: the service's virtualenv
may live where user ``cyrus`` cannot read it. The instance's wrapper script (written by
:meth:`shipmail.mailserver.cyrus.CyrusInstance.prepare`) runs a copy of this file kept in the
instance directory::

    sendmail.py --outbox DIR [--relay HOST:PORT] -bs

The outbox directory must be writable by user ``cyrus``. Other sendmail options Cyrus might pass
(``-f``, ``-i``, ``-oi``...) are accepted and ignored; only ``-bs`` mode exists. Diagnostics go to
stderr (never message contents). Exit status 0 after QUIT or end of input.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import secrets
import smtplib
import sys
from pathlib import Path
from typing import BinaryIO

#: Largest message accepted, in bytes (advertised as SIZE); larger ones get 552.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Longest command line accepted, in bytes (RFC 5321 allows 512; extensions make it longer).
MAX_LINE_BYTES = 4096
#: Most recipients accepted for one message.
MAX_RECIPIENTS = 1000


def _log(message: str) -> None:
    sys.stderr.write(f"shipmail-sendmail: {message}\n")
    sys.stderr.flush()


def parse_relay(relay: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6addr]:port`` into ``(host, port)``; ``ValueError`` if malformed."""
    host, sep, port_text = relay.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"relay must be host:port, got {relay!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"relay port out of range: {port}")
    return host, port


def _extract_path(argument: str, keyword: str) -> str | None:
    """The address inside ``FROM:<addr> params`` / ``TO:<addr>``; None if malformed."""
    if argument[: len(keyword)].upper() != keyword:
        return None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in argument):
        return None  # no control characters: they would end up in a header
    rest = argument[len(keyword) :].strip()
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            return None
        return rest[1:end]
    # Tolerate a bare address without angle brackets.
    return rest.split(" ", 1)[0] if rest else None


def store_message(outbox: Path, sender: str, recipients: list[str], data: bytes) -> Path:
    """Write one message atomically into ``outbox``; returns the final ``.eml`` path."""
    now = datetime.datetime.now(datetime.UTC)
    name = f"{now:%Y%m%dT%H%M%S.%fZ}-{os.getpid()}-{secrets.token_hex(4)}.eml"
    folded_recipients = ",\r\n ".join(f"<{r}>" for r in recipients)
    header = (f"X-Envelope-From: <{sender}>\r\nX-Envelope-To: {folded_recipients}\r\n").encode(
        "utf-8", "surrogateescape"
    )
    temporary = outbox / f".{name}.tmp"
    final = outbox / name
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(header)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return final


def relay_message(relay: str, sender: str, recipients: list[str], data: bytes) -> None:
    """Send one message through the SMTP server at ``relay`` (``host:port``); raises on failure."""
    host, port = parse_relay(relay)
    options: list[str] = []
    if any(not address.isascii() for address in [sender, *recipients]):
        options.append("SMTPUTF8")
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        smtp.sendmail(sender, recipients, data, mail_options=options)


class SmtpSession:
    """One SMTP conversation over a pair of binary streams (stdin/stdout when run by Cyrus)."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO, *, outbox: Path | None, relay: str | None) -> None:
        self._reader = reader
        self._writer = writer
        self._outbox = outbox
        self._relay = relay
        self._sender: str | None = None
        self._recipients: list[str] = []
        self._too_large = False

    def _reply(self, text: str) -> None:
        self._writer.write(text.encode("ascii") + b"\r\n")
        self._writer.flush()

    def _reset(self) -> None:
        self._sender = None
        self._recipients = []

    def _read_line(self, limit: int) -> bytes | None:
        """One line without its line ending; None at end of input; b'\\0' marker if too long."""
        line = self._reader.readline(limit + 1)
        if not line:
            return None
        if len(line) > limit and not line.endswith(b"\n"):
            # Swallow the rest of the over-long line.
            while True:
                more = self._reader.readline(limit)
                if not more or more.endswith(b"\n"):
                    break
            return b"\0"
        return line.rstrip(b"\r\n")

    def _read_data(self) -> bytes | None:
        """The DATA payload up to the lone ``.``, dot-unstuffed; None at end of input.

        Past :data:`MAX_MESSAGE_BYTES` the rest is read and dropped and ``_too_large`` is set.
        """
        chunks: list[bytes] = []
        size = 0
        self._too_large = False
        while True:
            line = self._reader.readline(MAX_LINE_BYTES * 16)
            if not line:
                return None
            stripped = line.rstrip(b"\r\n")
            if stripped == b"." and line.endswith(b"\n"):
                return b"".join(chunks)
            if stripped.startswith(b"."):
                stripped = stripped[1:]
            ending = b"\r\n" if line.endswith(b"\n") else b""
            size += len(stripped) + len(ending)
            if size > MAX_MESSAGE_BYTES:
                self._too_large = True
                continue
            chunks.append(stripped + ending)

    def _deliver(self, data: bytes) -> str:
        assert self._sender is not None
        try:
            if self._relay:
                relay_message(self._relay, self._sender, self._recipients, data)
            elif self._outbox is not None:
                store_message(self._outbox, self._sender, self._recipients, data)
            else:
                return "451 4.3.0 no outbox or relay configured"
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            _log(f"delivery failed: {type(exc).__name__}: {exc}")
            return "451 4.3.0 temporary failure, try again later"
        return "250 2.0.0 OK queued"

    def run(self) -> None:
        """Serve commands until QUIT or end of input."""
        self._reply("220 localhost shipmail-sendmail ESMTP ready")
        while True:
            raw = self._read_line(MAX_LINE_BYTES)
            if raw is None:
                return
            if raw == b"\0":
                self._reply("500 5.5.2 line too long")
                continue
            line = raw.decode("utf-8", "surrogateescape")
            verb, _, argument = line.partition(" ")
            verb = verb.upper()
            argument = argument.strip()
            if verb == "EHLO":
                self._reset()
                self._writer.write(
                    b"250-localhost\r\n"
                    b"250-8BITMIME\r\n"
                    b"250-SMTPUTF8\r\n"
                    + f"250-SIZE {MAX_MESSAGE_BYTES}\r\n".encode("ascii")
                    + b"250 ENHANCEDSTATUSCODES\r\n"
                )
                self._writer.flush()
            elif verb == "HELO":
                self._reset()
                self._reply("250 localhost")
            elif verb == "MAIL":
                path = _extract_path(argument, "FROM:")
                if path is None:
                    self._reply("501 5.5.4 syntax: MAIL FROM:<address>")
                elif self._sender is not None:
                    self._reply("503 5.5.1 sender already given")
                else:
                    self._sender = path
                    self._recipients = []
                    self._reply("250 2.1.0 OK")
            elif verb == "RCPT":
                path = _extract_path(argument, "TO:")
                if self._sender is None:
                    self._reply("503 5.5.1 MAIL first")
                elif not path:
                    self._reply("501 5.5.4 syntax: RCPT TO:<address>")
                elif len(self._recipients) >= MAX_RECIPIENTS:
                    self._reply("452 4.5.3 too many recipients")
                else:
                    self._recipients.append(path)
                    self._reply("250 2.1.5 OK")
            elif verb == "DATA":
                if self._sender is None or not self._recipients:
                    self._reply("503 5.5.1 MAIL and RCPT first")
                    continue
                self._reply("354 end data with <CR><LF>.<CR><LF>")
                data = self._read_data()
                if data is None:
                    return
                if self._too_large:
                    self._reply("552 5.3.4 message too big")
                else:
                    self._reply(self._deliver(data))
                self._reset()
            elif verb == "RSET":
                self._reset()
                self._reply("250 2.0.0 OK")
            elif verb == "NOOP":
                self._reply("250 2.0.0 OK")
            elif verb == "VRFY":
                self._reply("252 2.5.0 cannot verify")
            elif verb == "QUIT":
                self._reply("221 2.0.0 bye")
                return
            else:
                self._reply("502 5.5.2 command not implemented")


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``sendmail.py --outbox DIR [--relay HOST:PORT] -bs``."""
    parser = argparse.ArgumentParser(prog="shipmail-sendmail", allow_abbrev=False)
    parser.add_argument("--outbox", type=Path, default=None)
    parser.add_argument("--relay", default=None)
    parser.add_argument("-b", dest="mode", default="s", help="only 's' (-bs: SMTP on stdin/stdout) is supported")
    args, _ignored = parser.parse_known_args(argv)
    if args.mode != "s":
        _log(f"unsupported mode -b{args.mode}; only -bs")
        return 64
    if args.relay:
        try:
            parse_relay(args.relay)
        except ValueError as exc:
            _log(str(exc))
            return 64
    elif args.outbox is None:
        _log("either --outbox or --relay is required")
        return 64
    session = SmtpSession(sys.stdin.buffer, sys.stdout.buffer, outbox=args.outbox, relay=args.relay or None)
    with contextlib.suppress(BrokenPipeError):
        session.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
