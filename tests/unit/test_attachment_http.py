"""HTTP semantics of attachment downloads as pure functions: Range (RFC 9110 section 14),
If-None-Match (section 13.1.2), Content-Disposition (RFC 6266 / RFC 8187), and the streaming cut."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

import httpx
import pytest

from shipmail.http.errors import ValidationFailed
from shipmail.inbox.attachments import (
    RangeNotSatisfiable,
    check_name,
    content_disposition,
    etag_for,
    etag_matches,
    parse_range,
    stream,
)

ETAG = etag_for("Gabc")


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=0-", (0, 99)),
        ("bytes=90-200", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-500", (0, 99)),
        ("BYTES = 5 - 6", (5, 6)),
        ("bytes=99-99", (99, 99)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole body
        ("bytes=9-3", None),  # invalid: ignored
        ("bytes=-", None),
        ("bytes=a-b", None),
        ("pages=1-2", None),
    ],
)
def test_parse_range(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    "header, size", [("bytes=100-", 100), ("bytes=200-300", 100), ("bytes=-0", 100), ("bytes=0-", 0), ("bytes=-5", 0)]
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def test_if_range_and_unknown_size() -> None:
    assert parse_range("bytes=0-1", 100, if_range=ETAG, etag=ETAG) == (0, 1)
    assert parse_range("bytes=0-1", 100, if_range='"other"', etag=ETAG) is None
    assert parse_range("bytes=0-1", 100, if_range="Sat, 21 Nov 2026 00:00:00 GMT", etag=ETAG) is None
    assert parse_range("bytes=0-1", -1) is None


def test_etags() -> None:
    assert ETAG == '"Gabc"'
    assert etag_matches(ETAG, ETAG) and etag_matches("W/" + ETAG, ETAG) and etag_matches("*", ETAG)
    assert etag_matches('"x", ' + ETAG, ETAG)
    assert not etag_matches(None, ETAG) and not etag_matches('"Gab"', ETAG)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("report.pdf", 'attachment; filename="report.pdf"'),
        ("ciële.txt", "attachment; filename=\"ciele.txt\"; filename*=UTF-8''ci%C3%ABle.txt"),
        ('a"b\\c.txt', "attachment; filename=\"a_b_c.txt\"; filename*=UTF-8''a%22b_c.txt"),
        ("../../etc/passwd", 'attachment; filename="_.._etc_passwd"'),
        ("", 'attachment; filename="attachment"'),
        ("...", 'attachment; filename="attachment"'),
    ],
)
def test_content_disposition(name: str, expected: str) -> None:
    assert content_disposition(name) == expected


def test_content_disposition_is_latin1_safe_and_round_trips() -> None:
    for name in ("日本語.txt", "emoji 😀.png", "Überweisung März.pdf", "x" * 600):
        value = content_disposition(name)
        value.encode("ascii")  # header-safe
        if "filename*=" in value:
            assert unquote(value.split("filename*=UTF-8''")[1]) == name[:255]


def test_names_with_control_characters_are_refused() -> None:
    assert check_name("fine.txt") == "fine.txt" and check_name(None) is None
    for bad in ("a\r\nb", "a\x00", "tab\there"):
        with pytest.raises(ValidationFailed):
            check_name(bad)


class Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize("start, length", [(0, None), (0, 10), (3, 4), (9, 12), (25, 5), (29, 1), (0, 30)])
def test_stream_cuts_ranges_without_joining_chunks(start: int, length: int | None) -> None:
    data = bytes(range(30))
    body = Chunks([data[0:7], data[7:7], data[7:20], data[20:30]])
    upstream = httpx.Response(200, stream=body)

    async def collect() -> list[bytes]:
        return [chunk async for chunk in stream(upstream, start, length)]

    got = asyncio.run(collect())
    end = len(data) if length is None else start + length
    assert b"".join(got) == data[start:end]
    assert all(len(c) <= 13 for c in got)
    assert body.closed


def test_stream_closes_the_upstream_when_the_consumer_stops() -> None:
    body = Chunks([b"a" * 10] * 5)
    upstream = httpx.Response(200, stream=body)

    async def first_only() -> None:
        gen = stream(upstream)
        await gen.__anext__()
        await gen.aclose()

    asyncio.run(first_only())
    assert body.closed
