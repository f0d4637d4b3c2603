"""Hostile input answers a 4xx envelope that says what is wrong, never a 5xx (issue 8, points 4
and 5): integers beyond Python's int-string limit in bodies, queries and headers, passwords of
73-128 characters (and non-ASCII ones), local parts the mail server reserves, attachment names
with dot segments, control characters and one length limit in display names, and the cap on
error details. The same cases are fuzzed in tests/unit/test_schemathesis.py and
tests/integration/test_schemathesis_cyrus.py; against the real Cyrus in
tests/integration/test_hostile_cyrus.py.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import hypothesis
import pytest
from hypothesis import HealthCheck
from hypothesis import strategies as st
from starlette.testclient import TestClient

from shipmail.app import create_app
from shipmail.config import Settings
from shipmail.routes import OPERATIONS
from tests.fakes import FakeJmap, FakeMailServer
from tests.unit.conftest import auth, make_key, verify_domain

#: Python refuses to turn more digits than this into an int (``sys.get_int_max_str_digits``).
HUGE = "9" * (sys.get_int_max_str_digits() + 1)
STRONG = "Vq7-Lantern-Meadow-42"


def _error(r: Any, status: int) -> dict[str, Any]:
    """The error of ``r`` (a TestClient response), checked to be the envelope with ``status``."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    err: dict[str, Any] = r.json()["error"]
    assert err["request_id"] == r.headers["x-request-id"]
    assert isinstance(err["message"], str) and err["message"]
    return err


# ----------------------------------------------------------------------------- huge integers


def _json_body_operations() -> list[Any]:
    return [
        pytest.param(op.method, re.sub(r"{\w+}", "mbx_x", op.path), id=f"{op.method} {op.path}")
        for op in OPERATIONS
        if op.body is not None
    ]


@pytest.mark.parametrize(("method", "path"), _json_body_operations())
def test_integer_beyond_the_int_string_limit_in_any_body_is_422(
    client: TestClient, key: str, method: str, path: str
) -> None:
    """``json.loads`` raises ValueError (not JSONDecodeError) for an integer of more than 4,300
    digits: every JSON-body operation answers 422 ``json_invalid`` saying so."""
    for number in (HUGE, "-" + HUGE):
        body = b'{"threshold": ' + number.encode() + b"}"
        headers = {**auth(key), "Content-Type": "application/json"}
        r = client.request(method, "/v1" + path, content=body, headers=headers)
        err = _error(r, 422)
        assert err["details"] == [{"field": "body", "code": "json_invalid", "message": err["details"][0]["message"]}], (
            err
        )
        assert "digits" in err["message"] and str(sys.get_int_max_str_digits()) in err["message"]


@pytest.mark.parametrize(
    "path",
    ["/v1/domains", "/v1/mailboxes", "/v1/mailboxes/mbx_x/inbox/messages", "/v1/mailboxes/mbx_x/inbox/threads"],
)
def test_integer_beyond_the_int_string_limit_in_a_query_is_422(client: TestClient, key: str, path: str) -> None:
    for number in (HUGE, "-" + HUGE, "+" + HUGE, "0" * 5000 + "5"):
        r = client.get(path, params={"limit": number}, headers=auth(key))
        if number.startswith("0"):  # leading zeros are not a large number: limit=5
            assert r.status_code in (200, 404), r.text[:300]
            continue
        err = _error(r, 422)
        assert [d["field"] for d in err["details"]] == ["limit"]


@pytest.mark.parametrize("declared", [HUGE, "²", "1" * 30])
def test_a_content_length_that_is_no_usable_number_does_not_500(client: TestClient, key: str, declared: str) -> None:
    """A declared length of more digits than any body (or a digit Python reads but HTTP does not)
    is too large or ignored, never a 500."""
    headers = [(name.encode(), value.encode()) for name, value in auth(key).items()]
    headers += [(b"Content-Type", b"application/json"), (b"Content-Length", declared.encode("latin-1"))]
    r = client.post("/v1/domains", content=b'{"name": "x.example"}', headers=headers)
    assert r.status_code in (201, 413, 422), (r.status_code, r.text[:300])


# ----------------------------------------------------------------------------- passwords


@pytest.fixture
def domain(client: TestClient, settings: Settings, key: str) -> dict[str, Any]:
    dom = client.post("/v1/domains", json={"name": "example.com"}, headers=auth(key)).json()
    verify_domain(settings, "example.com")
    return dom  # type: ignore[no-any-return]


def _long_password(length: int, alphabet: str = "Zq8-Lantern-Meadow-") -> str:
    return (alphabet * (length // len(alphabet) + 1))[:length]


#: Passwords the API documents (8-128 characters), beyond zxcvbn's 72, some far beyond one byte per
#: character: 128 characters of up to 4 UTF-8 bytes each.
LONG_PASSWORDS = [
    pytest.param(_long_password(73), id="73-ascii"),
    pytest.param(_long_password(100), id="100-ascii"),
    pytest.param(_long_password(128), id="128-ascii"),
    pytest.param("Aa9" + ("日本語のパスワード" * 14)[:125], id="128-cjk"),
    pytest.param("Aa9Ünï" + "😀🔑" * 61, id="128-astral"),
]


@pytest.mark.parametrize("password", LONG_PASSWORDS)
def test_passwords_up_to_128_characters_are_accepted(
    client: TestClient, key: str, domain: dict[str, Any], password: str
) -> None:
    from shipmail.mailboxes.passwords import MAX_LENGTH

    assert len(password) <= MAX_LENGTH
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": domain["id"], "address": "long", "password": password},
        headers=auth(key),
    )
    assert r.status_code == 201, r.text[:300]
    other = password[:-1] + ("x" if password[-1] != "x" else "y")
    r = client.patch(f"/v1/mailboxes/{r.json()['id']}/password", json={"password": other}, headers=auth(key))
    assert r.status_code == 200, r.text[:300]


def test_a_long_password_is_judged_on_its_first_72_characters(
    client: TestClient, key: str, domain: dict[str, Any]
) -> None:
    """zxcvbn's cost grows with the length (it refuses more than 72 characters): a password whose
    first 72 characters are easy to guess is refused however it ends, and says so."""
    password = "a" * 72 + "Zq8-Lantern-Meadow"
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": domain["id"], "address": "weak", "password": password},
        headers=auth(key),
    )
    err = _error(r, 422)
    assert [d["code"] for d in err["details"]] == ["weak_password"]
    assert "72" in err["message"] and password not in r.text
    over = _long_password(129)
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": domain["id"], "address": "over", "password": over},
        headers=auth(key),
    )
    assert _error(r, 422)["details"][0]["field"] == "password" and over not in r.text


@hypothesis.given(st.text(min_size=0, max_size=140))
@hypothesis.settings(max_examples=60, deadline=None, derandomize=True, database=None)
def test_password_policy_never_raises(password: str) -> None:
    from shipmail.mailboxes.passwords import policy_problems

    problems = policy_problems(password)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    assert problems or 8 <= len(password) <= 128


# ----------------------------------------------------------------------------- reserved names


@pytest.mark.parametrize("local", ["anonymous", "Anonymous", "ANYONE", "anyone", "anybody"])
def test_local_parts_the_mail_server_reserves_are_422(
    client: TestClient, key: str, domain: dict[str, Any], mail: FakeMailServer, local: str
) -> None:
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": domain["id"], "address": local, "generate_password": True},
        headers=auth(key),
    )
    err = _error(r, 422)
    assert err["details"] == [{"field": "address", "code": "reserved_address", "message": err["details"][0]["message"]}]
    assert "reserved" in err["message"]
    assert ("provision", f"{local.lower()}@example.com") not in mail.calls  # refused before asking it
    assert client.get("/v1/mailboxes", headers=auth(key)).json()["data"] == []


def test_the_service_asks_the_mail_server_which_names_it_reserves(
    client: TestClient, key: str, domain: dict[str, Any], mail: FakeMailServer
) -> None:
    mail.reserved = {"postmaster"}
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": domain["id"], "address": "Postmaster", "generate_password": True},
        headers=auth(key),
    )
    assert _error(r, 422)["details"][0]["code"] == "reserved_address"
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": domain["id"], "address": "anyone", "generate_password": True},
        headers=auth(key),
    )
    assert r.status_code == 201, r.text


# ----------------------------------------------------------------------------- display names


@pytest.mark.parametrize(
    "bad", ["a\r\nBcc: x@evil.example", "a\nb", "a\rb", "tab\there", "a\x7fb", "a\x85b", "a\u2028b"]
)
def test_display_names_with_control_characters_are_422(
    client: TestClient, key: str, domain: dict[str, Any], bad: str
) -> None:
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": domain["id"], "address": "dn", "generate_password": True, "display_name": bad},
        headers=auth(key),
    )
    err = _error(r, 422)
    assert [(d["field"], d["code"]) for d in err["details"]] == [("display_name", "control_characters")]
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": domain["id"], "address": "dn", "generate_password": True, "display_name": "Ann"},
        headers=auth(key),
    )
    assert r.status_code == 201
    url = f"/v1/mailboxes/{r.json()['id']}"
    err = _error(client.patch(url, json={"display_name": bad}, headers=auth(key)), 422)
    assert [(d["field"], d["code"]) for d in err["details"]] == [("display_name", "control_characters")]
    assert client.get(url, headers=auth(key)).json()["display_name"] == "Ann"


def test_display_name_has_one_length_limit(client: TestClient, key: str, domain: dict[str, Any]) -> None:
    from shipmail.mailboxes.schemas import DISPLAY_NAME_MAX_LENGTH, CreateMailboxRequest, UpdateMailboxRequest

    def limit(model: Any) -> int:
        prop = model.model_json_schema()["properties"]["display_name"]
        return int(next(v["maxLength"] for v in prop.get("anyOf", [prop]) if "maxLength" in v))

    assert limit(CreateMailboxRequest) == limit(UpdateMailboxRequest) == DISPLAY_NAME_MAX_LENGTH
    longest = "Ü" * DISPLAY_NAME_MAX_LENGTH
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": domain["id"], "address": "dn", "generate_password": True, "display_name": longest},
        headers=auth(key),
    )
    assert r.status_code == 201, r.text[:300]
    url = f"/v1/mailboxes/{r.json()['id']}"
    assert client.patch(url, json={"display_name": longest[1:]}, headers=auth(key)).status_code == 200
    too_long = longest + "x"
    requests: list[Callable[[], Any]] = [
        lambda: client.patch(url, json={"display_name": too_long}, headers=auth(key)),
        lambda: client.post(
            "/v1/mailboxes",
            json={"domain_id": domain["id"], "address": "dn2", "generate_password": True, "display_name": too_long},
            headers=auth(key),
        ),
    ]
    for request in requests:
        assert _error(request(), 422)["details"][0]["field"] == "display_name"


# ----------------------------------------------------------------------------- capped details


def test_error_details_are_capped_and_the_message_counts_them(client: TestClient, key: str) -> None:
    from shipmail.http.errors import MAX_DETAILS

    body = {"name": "x.example", **{f"k{i}": i for i in range(100_000)}}
    r = client.post("/v1/domains", json=body, headers=auth(key))
    err = _error(r, 422)
    assert len(err["details"]) == MAX_DETAILS
    assert "100,000 problems" in err["message"] and f"first {MAX_DETAILS}" in err["message"]
    assert len(r.content) < 20_000


def test_a_few_details_are_all_shown(client: TestClient, key: str) -> None:
    r = client.post("/v1/domains", json={"nme": "x", "other": 1}, headers=auth(key))
    err = _error(r, 422)
    assert len(err["details"]) == 3 and "first" not in err["message"]


# ----------------------------------------------------------------------------- attachments


class RecordingJmap(FakeJmap):
    """:class:`FakeJmap` that records download URLs, serves its blobs as a stream and, like Cyrus
    3.6, answers 400 to a download URL whose name segment is empty or a dot segment (decoded)."""

    def __init__(self) -> None:
        super().__init__()
        self.downloads: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.startswith("/jmap/download/"):
            raw = request.url.raw_path.decode("ascii").split("?")[0]
            self.downloads.append(raw)
            segments = raw.split("/")
            name = unquote(segments[5]) if len(segments) > 5 else ""
            if name in ("", ".", "..") or any(part in (".", "..") for part in name.split("/")):
                return httpx.Response(400, text="invalid name")
            data = self.blobs.get(segments[4]) if len(segments) > 4 else None
            if data is None:
                return httpx.Response(404, text="blob not found")
            # A stream, as a real server's body: the download is read with aiter_raw().
            return httpx.Response(
                200,
                stream=httpx.ByteStream(data),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
            )
        return super().__call__(request)


@pytest.fixture
def jmap() -> RecordingJmap:
    return RecordingJmap()


@pytest.fixture
def attachment_client(settings: Settings, mail: FakeMailServer, jmap: RecordingJmap) -> Iterator[TestClient]:
    app = create_app(settings, mail_server=mail, jmap_transport=httpx.MockTransport(jmap))
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@dataclass(frozen=True)
class Blob:
    """A mailbox, a key of its organisation and a blob of its account (FakeJmap has no
    Blob/lookup, so the download serves any blob it holds)."""

    key: str
    mailbox_id: str
    blob_id: str
    data: bytes


@pytest.fixture
def blob(attachment_client: TestClient, settings: Settings, jmap: RecordingJmap) -> Blob:
    key = make_key(settings)
    dom = attachment_client.post("/v1/domains", json={"name": "example.com"}, headers=auth(key)).json()
    verify_domain(settings, "example.com")
    r = attachment_client.post(
        "/v1/mailboxes",
        json={"domain_id": dom["id"], "address": "att", "generate_password": True},
        headers=auth(key),
    )
    assert r.status_code == 201, r.text
    data = bytes(range(256)) * 4
    jmap.blobs["Gblob"] = data
    return Blob(key=key, mailbox_id=r.json()["id"], blob_id="Gblob", data=data)


def _download(c: TestClient, blob: Blob, name: str | None = None, **headers: str) -> Any:
    query = {"blob_id": blob.blob_id} if name is None else {"blob_id": blob.blob_id, "name": name}
    return c.get(
        f"/v1/mailboxes/{blob.mailbox_id}/inbox/attachments", params=query, headers={**auth(blob.key), **headers}
    )


@pytest.mark.parametrize("name", [".", "..", "../x", "x/..", "a/../b", "./", "%2e%2e", "/", ""])
def test_attachment_names_never_reach_the_download_url(
    attachment_client: TestClient, jmap: RecordingJmap, blob: Blob, name: str
) -> None:
    r = _download(attachment_client, blob, name)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.content == blob.data
    assert r.headers["content-disposition"].startswith('attachment; filename="')
    assert all(url.split("/")[5] == jmap.downloads[0].split("/")[5] for url in jmap.downloads)
    assert name == "" or all(quote_free not in url for url in jmap.downloads for quote_free in ("%2F", ".."))


@pytest.mark.parametrize(
    ("name", "disposition"),
    [
        ("report.pdf", 'attachment; filename="report.pdf"'),
        ("Résumé.pdf", "attachment; filename=\"Resume.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf"),
    ],
)
def test_attachment_names_still_name_the_download(
    attachment_client: TestClient, blob: Blob, name: str, disposition: str
) -> None:
    r = _download(attachment_client, blob, name)
    assert r.status_code == 200 and r.headers["content-disposition"] == disposition


@pytest.mark.parametrize(
    ("header", "status", "content_range"),
    [
        (f"bytes={HUGE}-", 416, "bytes */1024"),
        (f"bytes={HUGE}-{HUGE}", 416, "bytes */1024"),
        (f"bytes=0-{HUGE}", 206, "bytes 0-1023/1024"),
        (f"bytes=1000-{HUGE}", 206, "bytes 1000-1023/1024"),
        (f"bytes=-{HUGE}", 206, "bytes 0-1023/1024"),
        (f"bytes={HUGE}-5", 200, None),  # last < first: invalid, ignored
        (f"bytes={'0' * 5000}1-{'0' * 5000}2", 206, "bytes 1-2/1024"),
    ],
)
def test_range_positions_beyond_the_int_string_limit(
    attachment_client: TestClient, blob: Blob, header: str, status: int, content_range: str | None
) -> None:
    """RFC 9110 section 14.1.2: positions are ``1*DIGIT`` without an upper bound; a first-pos at
    or beyond the length is unsatisfiable (416), a last-pos beyond it means the end."""
    r = _download(attachment_client, blob, Range=header)
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers.get("content-range") == content_range
    if status == 206:
        first, last = map(int, re.findall(r"\d+", content_range or "")[:2])
        assert r.content == blob.data[first : last + 1]


# ----------------------------------------------------------------------------- fuzzing


def _digits(max_size: int = 6000) -> st.SearchStrategy[str]:
    return st.one_of(
        st.from_regex(r"[0-9]{1,4}", fullmatch=True),
        st.integers(1, max_size).flatmap(lambda n: st.just("1" + "0" * (n - 1))),
        st.text("0123456789", min_size=1, max_size=max_size),
    )


@hypothesis.given(
    first=st.one_of(st.just(""), _digits()),
    last=st.one_of(st.just(""), _digits()),
    size=st.integers(0, 2000),
)
@hypothesis.settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_parse_range_agrees_with_exact_arithmetic(first: str, last: str, size: int) -> None:
    """:func:`parse_range` on any ``bytes=first-last`` equals RFC 9110's answer computed with
    unbounded integers."""
    from shipmail.inbox.attachments import RangeNotSatisfiable, parse_range

    def expected() -> tuple[int, int] | type[RangeNotSatisfiable] | None:
        if not first and not last:
            return None
        old = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)
        try:
            f = int(first) if first else None
            lst = int(last) if last else None
        finally:
            sys.set_int_max_str_digits(old)
        if f is None:
            assert lst is not None
            if lst == 0 or size == 0:
                return RangeNotSatisfiable
            return max(0, size - lst), size - 1
        if lst is not None and lst < f:
            return None
        if f >= size:
            return RangeNotSatisfiable
        return f, min(size - 1, lst if lst is not None else size - 1)

    want = expected()
    if want is RangeNotSatisfiable:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(f"bytes={first}-{last}", size)
    else:
        assert parse_range(f"bytes={first}-{last}", size) == want


_json_numbers = st.one_of(
    _digits(),
    _digits().map(lambda d: "-" + d),
    _digits(60).map(lambda d: d + "e" + d),
    _digits(60).map(lambda d: "0." + d + "E-" + d),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1.5", "true", "null"]),
)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, str]]:
    from tests.dbfixtures import migrated_database

    tmp_path: Path = tmp_path_factory.mktemp("hostile")
    with migrated_database("sqlite", tmp_path) as url:
        settings = Settings.from_env(
            data_dir=tmp_path,
            database_url=url,
            secret_key=b"test-secret",
            ratelimit_read="100000/minute",
            ratelimit_write="100000/minute",
            ratelimit_send="100000/minute",
        )
        key = make_key(settings)
        app = create_app(settings, mail_server=FakeMailServer(), jmap_transport=httpx.MockTransport(FakeJmap()))
        with TestClient(app, base_url="http://testserver") as c:
            dom = c.post("/v1/domains", json={"name": "fuzz.example"}, headers=auth(key)).json()
            verify_domain(settings, "fuzz.example")
            r = c.post(
                "/v1/mailboxes",
                json={"domain_id": dom["id"], "address": "fuzz", "generate_password": True},
                headers=auth(key),
            )
            assert r.status_code == 201, r.text
            yield c, key, r.json()["id"]


_BODY_OPERATIONS = [op for op in OPERATIONS if op.body is not None]


@hypothesis.given(
    op=st.sampled_from(_BODY_OPERATIONS),
    field=st.sampled_from(["threshold", "display_name", "password", "name", "rules", "enabled", "x"]),
    number=_json_numbers,
    nested=st.booleans(),
)
@hypothesis.settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_numbers_of_any_size_in_any_body_answer_4xx(
    fuzz_app: tuple[TestClient, str, str], op: Any, field: str, number: str, nested: bool
) -> None:
    c, key, mailbox_id = fuzz_app
    value = f'[{{"a": {number}}}]' if nested else number
    path = "/v1" + re.sub(r"{\w+}", mailbox_id, op.path)
    r = c.request(
        op.method,
        path,
        content=f'{{"{field}": {value}}}'.encode(),
        headers={**auth(key), "Content-Type": "application/json"},
    )
    assert r.status_code < 500, (op.method, op.path, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
