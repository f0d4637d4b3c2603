"""The Unix-socket transport (:mod:`shipmail.jmap.transport`) against a small HTTP/1.1 server on a
real Unix socket: one write per request, keep-alive reuse, large and streamed bodies, a server that
closes an idle connection, timeouts and refused connections as httpx's errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shipmail.jmap.transport import CORK_BYTES, UnixSocketTransport


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
