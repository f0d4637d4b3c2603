"""The Unix-socket transport (:mod:`shipmail.jmap.transport`) against a small HTTP/1.1 server on a
real Unix socket: one write per request, keep-alive reuse, large and streamed bodies, a server that
closes an idle connection, timeouts and refused connections as httpx's errors; the same for the
JMAP call and download paths on aiohttp (:class:`JmapCalls`) and :class:`JmapClient` over them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from jmapc.methods import MailboxGet

from shipmail.http.errors import ServiceUnavailable
from shipmail.jmap.client import JmapClient
from shipmail.jmap.request import Request
from shipmail.jmap.transport import CORK_BYTES, CallFailed, JmapCalls, UnixSocketTransport
from shipmail.mailserver.base import JmapAccess


class Server:
    """Answers each request with ``body`` (Content-Length, keep-alive); records the chunks each
    connection received and how many connections were made."""

    def __init__(self, body: bytes = b'{"ok":true}', *, delay: float = 0.0, close_after: bool = False) -> None:
        self.body, self.delay, self.close_after = body, delay, close_after
        self.connections = 0
        self.reads: list[list[bytes]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        reads: list[bytes] = []
        self.reads.append(reads)
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = await reader.read(1 << 20)
                    if not chunk:
                        return
                    reads.append(chunk)
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    chunk = await reader.read(1 << 20)
                    reads.append(chunk)
                    buffer += chunk
                buffer = buffer[length:]
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(self.body)
                    + self.body
                )
                await writer.drain()
                if self.close_after:
                    return
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, server: Server) -> AsyncIterator[httpx.AsyncClient]:
    path = str(tmp_path / "http.sock")
    listener = await asyncio.start_unix_server(server.handle, path=path)
    client = httpx.AsyncClient(transport=UnixSocketTransport(path), timeout=httpx.Timeout(2.0))
    try:
        yield client
    finally:
        await client.aclose()
        listener.close()
        await listener.wait_closed()


async def test_a_request_arrives_in_one_write_and_the_connection_is_reused(tmp_path: Path) -> None:
    server = Server()
    async with serving(tmp_path, server) as client:
        for i in range(3):
            response = await client.post("http://localhost/jmap/", content=b'{"n":%d}' % i)
            assert response.status_code == 200
            assert response.json() == {"ok": True}
    assert server.connections == 1
    # Head and body together: one read per request (httpcore alone writes them separately).
    assert len(server.reads[0]) == 3
    assert all(chunk.startswith(b"POST /jmap/ HTTP/1.1\r\n") and chunk.endswith(b"}") for chunk in server.reads[0])


async def test_large_request_and_response_bodies(tmp_path: Path) -> None:
    payload = bytes(range(256)) * (3 * CORK_BYTES // 256)  # larger than the cork: sent as it comes
    server = Server(body=b"x" * (3 << 20))
    async with serving(tmp_path, server) as client:
        response = await client.post("http://localhost/upload", content=payload)
        assert response.content == server.body
        received = b"".join(server.reads[0])
        assert received.endswith(payload)
        async with client.stream("GET", "http://localhost/blob") as streamed:
            chunks = [chunk async for chunk in streamed.aiter_raw()]
        assert b"".join(chunks) == server.body


async def test_an_idle_connection_the_server_closed_is_replaced(tmp_path: Path) -> None:
    server = Server(close_after=True)
    async with serving(tmp_path, server) as client:
        for _ in range(3):
            assert (await client.get("http://localhost/")).status_code == 200
            await asyncio.sleep(0.05)
    assert server.connections == 3


async def test_a_slow_server_times_out(tmp_path: Path) -> None:
    server = Server(delay=1.0)
    async with serving(tmp_path, server) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("http://localhost/", timeout=httpx.Timeout(0.2))


async def test_no_server_is_a_connect_error(tmp_path: Path) -> None:
    client = httpx.AsyncClient(transport=UnixSocketTransport(str(tmp_path / "missing.sock")))
    with pytest.raises(httpx.ConnectError):
        await client.get("http://localhost/")
    await client.aclose()


# ------------------------------------------------------------------ JmapCalls (aiohttp)


@contextlib.asynccontextmanager
async def calling(tmp_path: Path, server: Server) -> AsyncIterator[JmapCalls]:
    path = str(tmp_path / "http.sock")
    listener = await asyncio.start_unix_server(server.handle, path=path)
    transport = UnixSocketTransport(path)
    try:
        yield transport.jmap_calls
    finally:
        await transport.aclose()
        listener.close()
        await listener.wait_closed()


def _heads(server: Server) -> list[bytes]:
    return [chunk.partition(b"\r\n\r\n")[0] for reads in server.reads for chunk in reads]


async def test_calls_send_exactly_the_callers_headers_and_reuse_the_connection(tmp_path: Path) -> None:
    server = Server()
    headers = {"Authorization": "Bearer t", "Accept": "application/json", "Content-Type": "application/json"}
    async with calling(tmp_path, server) as calls:
        for i in range(3):
            status, content = await calls.post(
                "http://localhost/jmap/", headers, b'{"n":%d}' % i, timeout=2.0, connect_timeout=1.0
            )
            assert (status, content) == (200, b'{"ok":true}')
    assert server.connections == 1
    head = _heads(server)[0].split(b"\r\n")
    assert head[0] == b"POST /jmap/ HTTP/1.1"
    names = sorted(line.partition(b":")[0].lower() for line in head[1:])
    # No User-Agent, no Accept-Encoding (nothing compressed), no cookies.
    assert names == [b"accept", b"authorization", b"content-length", b"content-type", b"host"]
    assert b"".join(server.reads[0]).endswith(b'{"n":2}')


async def test_calls_large_bodies(tmp_path: Path) -> None:
    server = Server(body=b"y" * (3 << 20))
    async with calling(tmp_path, server) as calls:
        status, content = await calls.post(
            "http://localhost/jmap/", {}, b"z" * (1 << 20), timeout=2.0, connect_timeout=1.0
        )
    assert status == 200 and content == server.body
    assert b"".join(server.reads[0]).endswith(b"z" * (1 << 20))


async def test_calls_replace_an_idle_connection_the_server_closed(tmp_path: Path) -> None:
    server = Server(close_after=True)
    async with calling(tmp_path, server) as calls:
        for _ in range(3):
            status, _ = await calls.post("http://localhost/jmap/", {}, b"{}", timeout=2.0, connect_timeout=1.0)
            assert status == 200
            await asyncio.sleep(0.05)
    assert server.connections == 3


async def test_a_slow_server_times_a_call_out(tmp_path: Path) -> None:
    async with calling(tmp_path, Server(delay=1.0)) as calls:
        with pytest.raises(CallFailed) as failed:
            await calls.post("http://localhost/jmap/", {}, b"{}", timeout=0.2, connect_timeout=0.2)
    assert failed.value.timed_out


async def test_a_call_without_server_fails_unreachable(tmp_path: Path) -> None:
    transport = UnixSocketTransport(str(tmp_path / "missing.sock"))
    with pytest.raises(CallFailed) as failed:
        await transport.jmap_calls.post("http://localhost/jmap/", {}, b"{}", timeout=1.0, connect_timeout=1.0)
    assert not failed.value.timed_out
    await transport.aclose()


@contextlib.asynccontextmanager
async def _truncating_server(tmp_path: Path, answer: bytes) -> AsyncIterator[UnixSocketTransport]:
    """A transport to a server on a Unix socket that reads a request, writes ``answer`` (a
    response shorter than its Content-Length) and closes the connection."""

    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        writer.write(answer)
        await writer.drain()
        writer.close()

    path = str(tmp_path / "http.sock")
    listener = await asyncio.start_unix_server(truncated, path=path)
    transport = UnixSocketTransport(path)
    try:
        yield transport
    finally:
        await transport.aclose()
        listener.close()
        await listener.wait_closed()


async def test_a_server_closing_mid_answer_fails_the_call(tmp_path: Path) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
    async with _truncating_server(tmp_path, answer) as transport:
        with pytest.raises(CallFailed) as failed:
            await transport.jmap_calls.post("http://localhost/jmap/", {}, b"{}", timeout=1.0, connect_timeout=1.0)
        assert not failed.value.timed_out


class _Mail:
    """The one thing JmapClient asks of a mail server: how to reach an account."""

    def jmap_access(self, address: str) -> JmapAccess:
        return JmapAccess(session_url="http://localhost/jmap/", authorization="Bearer t", account_id=address)


SESSION = {
    "apiUrl": "/jmap/api/",
    "downloadUrl": "/jmap/download/{accountId}/{blobId}/{name}?accept={type}",
    "uploadUrl": "/jmap/upload/{accountId}/",
    "state": "s1",
    "accounts": {"a@x.example": {"accountCapabilities": {}}},
    "capabilities": {},
}


async def test_the_client_calls_over_jmap_calls_and_maps_failures(tmp_path: Path) -> None:
    """JmapClient.call on the Unix-socket transport: the session through httpx, the call through
    JmapCalls (one HTTP request each, counted); a server that stops answering is a 503."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    writer.close()
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = next(
                (
                    int(v)
                    for n, _, v in (x.partition(b":") for x in head.split(b"\r\n"))
                    if n.lower() == b"content-length"
                ),
                0,
            )
            while len(buffer) < length:
                buffer += await reader.read(1 << 16)
            body, buffer = buffer[:length], buffer[length:]
            seen.append(head.split(b"\r\n")[0])
            if head.startswith(b"GET /jmap/ "):
                answer = json.dumps(SESSION).encode()
            else:
                calls = json.loads(body)["methodCalls"]
                answer = json.dumps(
                    {"sessionState": "s1", "methodResponses": [["Mailbox/get", {"list": []}, c[2]] for c in calls]}
                ).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer)
            await writer.drain()

    path = str(tmp_path / "http.sock")
    listener = await asyncio.start_unix_server(handle, path=path)
    http = httpx.AsyncClient(transport=UnixSocketTransport(path), timeout=httpx.Timeout(1.0))
    client = JmapClient(_Mail(), timeout=1.0, http=http)  # type: ignore[arg-type]
    try:
        request = Request()
        call = request.add(MailboxGet(ids=None))
        results = await client.call("a@x.example", request)
        assert results.get(call) == {"list": []}
        assert seen == [b"GET /jmap/ HTTP/1.1", b"POST /jmap/api/ HTTP/1.1"]
        assert client.request_count == 2
        listener.close()
        await listener.wait_closed()
        await http.aclose()  # the pooled connections go too: the next call finds no server
        with pytest.raises(ServiceUnavailable):
            await client.call("a@x.example", request)
    finally:
        listener.close()
        await client.aclose()


async def test_a_streamed_download_reads_as_it_arrives_and_pools_only_a_finished_body(tmp_path: Path) -> None:
    """JmapCalls.stream: an httpx.Response with the answer's status and headers whose body streams;
    closed unread, its connection is not reused (the next request opens another)."""
    server = Server(body=b"b" * (2 << 20))
    async with calling(tmp_path, server) as calls:
        response = await calls.stream(
            "http://localhost/download/x", {"Range": "bytes=0-"}, timeout=2.0, connect_timeout=1.0
        )
        assert response.status_code == 200
        assert response.headers["content-length"] == str(2 << 20)
        assert b"".join([chunk async for chunk in response.aiter_raw()]) == server.body
        await response.aclose()
        again = await calls.stream("http://localhost/download/y", {}, timeout=2.0, connect_timeout=1.0)
        assert (await again.aread()) == server.body
        await again.aclose()
        assert server.connections == 1  # read to the end: the connection went back to the pool
        unread = await calls.stream("http://localhost/download/z", {}, timeout=2.0, connect_timeout=1.0)
        await unread.aclose()
        status, _ = await calls.post("http://localhost/jmap/", {}, b"{}", timeout=2.0, connect_timeout=1.0)
        assert status == 200
    assert server.connections == 2
    assert b"range: bytes=0-" in _heads(server)[0].lower()


async def test_a_download_that_breaks_midway_raises_httpx_read_error(tmp_path: Path) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10
    async with _truncating_server(tmp_path, answer) as transport:
        response = await transport.jmap_calls.stream("http://localhost/d", {}, timeout=1.0, connect_timeout=1.0)
        with pytest.raises(httpx.ReadError):
            async for _ in response.aiter_raw():
                pass
        await response.aclose()
