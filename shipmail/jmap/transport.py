"""httpx's transport to the mail server's Unix socket on a lean asyncio network layer.

:class:`UnixSocketTransport` is httpx's own :class:`httpx.AsyncHTTPTransport` (httpcore's
connection pool and HTTP/1.1 over h11, keep-alive, timeouts and error mapping unchanged) whose
connections use :class:`AsyncioBackend` instead of httpcore's default anyio streams:

- a request is written with ONE ``send`` (headers and a body up to :data:`CORK_BYTES` are held until
  the response is read, then sent together): httpcore writes the head and the body separately,
  which on a Unix socket wakes the server twice per request and makes it poll and read twice;
- reads take what the socket has, up to :data:`READ_BYTES` (256 KiB; httpcore asks for 64 KiB),
  straight from the non-blocking socket when data is waiting, and only otherwise wait on the
  event loop under the timeout: no anyio cancel scope per read and write, four times fewer loop
  turns for a large download.

Measured against the same Cyrus socket (scripts/bench reads, attachment; see the commit): the CPU
per JMAP call and per downloaded megabyte drop, the server's too (one wake-up per request).
Nothing changes on the wire but how the bytes are split into writes.

JMAP API calls (``POST`` of a JSON request, the whole JSON answer read: RFC 8620 section 3.3)
take a cheaper road over the same socket, :class:`JmapCalls`: aiohttp's client on a
:class:`aiohttp.UnixConnector` (its own keep-alive pool; the response head is parsed by aiohttp's
C HTTP parser, llhttp). Measured on this machine against the same Cyrus socket, the same
``Mailbox/get`` call in one process, alternating, 3 rounds of 2,000 calls each (issue 10;
``process_time`` per call, response decoded in every variant): httpx 0.28 through this module's
transport 0.63-0.97 ms of CPU per call, httpcore's pool alone (no httpx) 0.45-0.55 ms, aiohttp
0.26-0.34 ms, a minimal hand-written keep-alive client 0.08-0.15 ms. h11's pure-Python parser,
httpcore's per-request anyio locks and cancel scopes and httpx's request/response models are what
the difference is made of; aiohttp does the same work in C. Blob downloads go the same way
(:meth:`JmapCalls.stream`, handed back as an :class:`httpx.Response` whose body streams): same
run, an 8 MiB blob 30 times each, alternating: 0.77 ms of CPU per MB (median) against 0.93
through httpx (the wall time is Cyrus's). Uploads and the session resource stay on httpx
(write timeouts; rare). The httpx transport remains for them and for every other caller.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import httpcore
import httpx
from yarl import URL

#: Request bytes held before a write is sent without waiting for the response read.
CORK_BYTES = 64 * 1024
#: Largest read from the socket (httpcore asks for 64 KiB at a time).
READ_BYTES = 256 * 1024


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connected non-blocking socket (see the module docstring)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []
        self._held = 0

    async def _flush(self, timeout: float | None) -> None:
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._held = 0
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc
        if sent == len(data):
            return
        try:
            async with asyncio.timeout(timeout):
                await self._loop.sock_sendall(self._sock, memoryview(data)[sent:])
        except TimeoutError:
            raise httpcore.WriteTimeout("write timed out") from None
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._out.append(buffer)
        self._held += len(buffer)
        if self._held >= CORK_BYTES:
            await self._flush(timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._out:
            await self._flush(timeout)
        size = max(max_bytes, READ_BYTES)
        try:
            return self._sock.recv(size)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc
        try:
            async with asyncio.timeout(timeout):
                return await self._loop.sock_recv(self._sock, size)
        except TimeoutError:
            raise httpcore.ReadTimeout("read timed out") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def aclose(self) -> None:
        self._out.clear()
        self._sock.close()

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._sock
        if info == "is_readable":  # an idle keep-alive connection the server closed
            try:
                self._sock.recv(1, socket.MSG_PEEK)  # data or b"" (closed): readable
            except BlockingIOError:
                return False
            except OSError:
                return True
            return True
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Unix-socket connections as :class:`AsyncioStream` (TCP is not offered: use httpx's default)."""

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, path)
        except TimeoutError:
            sock.close()
            raise httpcore.ConnectTimeout("connect timed out") from None
        except OSError as exc:
            sock.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return AsyncioStream(sock)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("this transport serves Unix sockets only")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class CallFailed(Exception):
    """A JMAP call got no HTTP answer: the connection failed or broke (``timed_out`` False), or
    connecting, waiting for a pooled connection or a read took longer than its timeout."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class JmapCalls:
    """JMAP API requests to the Unix socket ``path`` on aiohttp (see the module docstring): a
    ``POST`` with a complete body, the complete answer read. One pool of at most ``limit``
    connections, kept alive :data:`KEEPALIVE_SECONDS` when idle; no cookies, no automatic
    ``User-Agent`` or ``Accept-Encoding`` (Cyrus is configured not to compress; the headers sent
    are exactly the caller's plus ``Host``, ``Content-Length`` and ``Content-Type``). Made lazily in
    the event loop of the first call; :meth:`aclose` closes it."""

    #: Seconds an idle pooled connection is kept (Cyrus's own idle limit, ``httptimeout``, is minutes).
    KEEPALIVE_SECONDS = 15.0

    def __init__(self, path: str, *, limit: int = 64) -> None:
        self._path = path
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}
        self._urls: dict[str, URL] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.UnixConnector(path=self._path, limit=self._limit, keepalive_timeout=self.KEEPALIVE_SECONDS)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            auto_decompress=False,
        )
        return self._session

    async def post(
        self, url: str, headers: dict[str, str], body: bytes, *, timeout: float, connect_timeout: float
    ) -> tuple[int, bytes]:
        """``POST url`` with ``headers`` and ``body`` (bytes); the answer's status and body.

        ``timeout`` (seconds) bounds the wait for a pooled connection and each read of the
        answer; ``connect_timeout`` a new connection's connect. Errors: :class:`CallFailed`."""
        session = self._session or self._open()
        limits = self._timeouts.get((timeout, connect_timeout))
        if limits is None:
            limits = self._timeouts[(timeout, connect_timeout)] = aiohttp.ClientTimeout(
                total=None, connect=timeout, sock_connect=connect_timeout, sock_read=timeout
            )
        target = self._urls.get(url)
        if target is None:
            if len(self._urls) > 1000:
                self._urls.clear()
            target = self._urls[url] = URL(url)
        try:
            async with session.post(target, data=body, headers=headers, timeout=limits) as response:
                return response.status, await response.read()
        except TimeoutError:
            raise CallFailed("timed out", timed_out=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CallFailed(type(exc).__name__, timed_out=False) from None

    async def stream(
        self, url: str, headers: dict[str, str], *, timeout: float, connect_timeout: float
    ) -> httpx.Response:
        """``GET url`` with ``headers``, the answer's head read and its body left to stream: an
        :class:`httpx.Response` (any status) whose ``aiter_raw``/``aiter_bytes``/``aread`` read
        the body as it arrives (chunks as the socket gives them, at most aiohttp's
        ``read_bufsize``, 256 KiB, buffered); the caller must ``aclose()`` it (a body not read to
        its end closes the connection instead of pooling it). ``timeout`` bounds the wait for a
        pooled connection and each read; ``connect_timeout`` a connect. Errors: :class:`CallFailed`
        before the head; while streaming, httpx's ``ReadTimeout``/``ReadError`` as httpx's own
        transport raises them."""
        session = self._session or self._open()
        try:
            upstream = await session.get(
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=timeout, sock_connect=connect_timeout, sock_read=timeout
                ),
            )
        except TimeoutError:
            raise CallFailed("timed out", timed_out=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CallFailed(type(exc).__name__, timed_out=False) from None
        return httpx.Response(
            upstream.status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.raw_headers],
            stream=_BodyStream(upstream),
            request=httpx.Request("GET", url),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class _BodyStream(httpx.AsyncByteStream):
    """An aiohttp response body as httpx's stream (see :meth:`JmapCalls.stream`)."""

    def __init__(self, upstream: aiohttp.ClientResponse) -> None:
        self._upstream = upstream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._upstream.content.iter_any():
                yield chunk
        except TimeoutError:
            raise httpx.ReadTimeout("read timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        if self._upstream.content.at_eof():
            self._upstream.release()
        else:
            self._upstream.close()


class UnixSocketTransport(httpx.AsyncHTTPTransport):
    """:class:`httpx.AsyncHTTPTransport` to the Unix socket ``path`` over :class:`AsyncioBackend`
    (every request goes to that socket, whatever its URL's host); :attr:`jmap_calls`, the
    :class:`JmapCalls` of the same socket, carries the JMAP API calls
    (:meth:`shipmail.jmap.client.JmapClient.call`). Closing the transport closes both."""

    def __init__(self, path: str, *, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits(max_connections=64, max_keepalive_connections=32)
        super().__init__(uds=path, limits=limits)
        self.jmap_calls = JmapCalls(path, limit=limits.max_connections or 64)
        # httpx builds its httpcore pool in __init__ without a network_backend parameter; the
        # same pool with ours (httpx is pinned below 0.29 in pyproject.toml).
        self._pool = httpcore.AsyncConnectionPool(
            uds=path,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )

    async def aclose(self) -> None:
        await self.jmap_calls.aclose()
        await super().aclose()
