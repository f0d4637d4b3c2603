"""A small asyncio LMTP client (RFC 2033) for the gateway's side towards the mail server.

Only what a relay needs: connect (TCP or Unix socket) and read the greeting, send one command
line and read its (possibly multi-line) reply, send the message body with dot-stuffing and read
one reply per accepted recipient. Replies are kept verbatim (code and text lines) so the gateway
can answer its client with the mail server's own words.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

#: Longest reply line accepted from the mail server, in bytes.
MAX_LINE = 64 * 1024


class BackendError(Exception):
    """The mail server's LMTP could not be reached, or broke the dialogue."""


@dataclass(frozen=True)
class Reply:
    """One LMTP reply: ``code`` and the text of each line (without the code)."""

    code: int
    lines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def wire(self) -> str:
        """The reply as it goes back to our client (multi-line replies with ``-`` continuations,
        lines joined by CRLF; the last CRLF is added by the server)."""
        lines = self.lines or ("",)
        parts = [f"{self.code}-{text}" for text in lines[:-1]]
        parts.append(f"{self.code} {lines[-1]}".rstrip())
        return "\r\n".join(parts)


@dataclass(frozen=True)
class Target:
    """Where the mail server's LMTP listens: a Unix socket ``path``, or ``host:port``."""

    path: Path | None = None
    host: str = "127.0.0.1"
    port: int | None = None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else f"{self.host}:{self.port}"


class LmtpConnection:
    """One open LMTP session with the mail server (after ``LHLO``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self.timeout = timeout

    @classmethod
    async def open(cls, target: Target, *, hostname: str, timeout: float) -> LmtpConnection:
        """Connect to ``target``, read its greeting and say ``LHLO hostname``; raises
        :class:`BackendError` when it cannot be reached or does not greet with 220/250."""
        try:
            async with asyncio.timeout(timeout):
                if target.path is not None:
                    reader, writer = await asyncio.open_unix_connection(str(target.path), limit=MAX_LINE)
                else:
                    reader, writer = await asyncio.open_connection(target.host, target.port, limit=MAX_LINE)
        except (OSError, TimeoutError) as exc:
            raise BackendError(f"cannot reach the mail server's LMTP at {target}: {exc or type(exc).__name__}") from exc
        conn = cls(reader, writer, timeout)
        try:
            greeting = await conn.read_reply()
            if greeting.code != 220:
                raise BackendError(f"the mail server's LMTP greeted {greeting.wire()!r}")
            hello = await conn.command(f"LHLO {hostname}")
            if hello.code != 250:
                raise BackendError(f"the mail server's LMTP answered LHLO with {hello.wire()!r}")
        except BaseException:
            conn.close()
            raise
        return conn

    async def read_reply(self, timeout: float | None = None) -> Reply:
        """The next reply; :class:`BackendError` on a timeout, a closed or garbled stream."""
        lines: list[str] = []
        try:
            async with asyncio.timeout(timeout or self.timeout):
                while True:
                    raw = await self._reader.readline()
                    if not raw.endswith(b"\n"):
                        raise BackendError("the mail server's LMTP closed the connection")
                    text = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                    if len(text) < 3 or not text[:3].isdigit():
                        raise BackendError(f"unexpected LMTP reply line {text[:80]!r}")
                    lines.append(text[4:])
                    if len(text) == 3 or text[3] != "-":
                        return Reply(int(text[:3]), tuple(lines))
        except TimeoutError:
            raise BackendError("the mail server's LMTP did not answer in time") from None
        except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
            raise BackendError(f"the mail server's LMTP failed: {exc}") from exc

    async def command(self, line: str) -> Reply:
        """Send one command line (no CR/LF inside) and read its reply."""
        if "\r" in line or "\n" in line:
            raise ValueError("an LMTP command is one line")
        await self._send(line.encode("utf-8") + b"\r\n")
        return await self.read_reply()

    async def data(self, content: bytes, recipients: int, timeout: float) -> tuple[Reply, list[Reply]]:
        """``DATA``: the reply to the command and, when it is 354, the message (dot-stuffed, CRLF
        line ends) followed by one reply per accepted recipient (RFC 2033 section 4.2), each
        within ``timeout`` seconds."""
        start = await self.command("DATA")
        if start.code != 354:
            return start, []
        body = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        if body.startswith(b"."):
            body = b"." + body
        body = body.replace(b"\r\n.", b"\r\n..")
        await self._send(body + b".\r\n")
        replies = [await self.read_reply(timeout) for _ in range(recipients)]
        return start, replies

    async def _send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            async with asyncio.timeout(self.timeout):
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            raise BackendError(f"sending to the mail server's LMTP failed: {exc or type(exc).__name__}") from exc

    async def quit(self) -> None:
        """``QUIT`` politely, then close; never raises."""
        with contextlib.suppress(BackendError, OSError):
            self._writer.write(b"QUIT\r\n")
            async with asyncio.timeout(1.0):
                await self._writer.drain()
                await self._reader.readline()
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
