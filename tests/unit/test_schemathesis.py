"""Property-based tests of every operation against the document the app serves (schemathesis 4).

The app runs on a migrated database (every backend of :mod:`tests.dbfixtures`) with the fake mail
server and the fake JMAP transport; every generated call carries a valid ``*`` key. Seeded objects
make the generated calls reach the handlers' success paths too: a verified domain with a mailbox
(``stable``) and a domain and a mailbox that the DELETE operations may remove (``victim``). The
``{id}`` path parameter is drawn from the generated values, the seeded ids and awkward strings
(NUL, non-ASCII, spaces); some bodies from the generated values and realistic ones
(``before_generate_*`` hooks).

Checks: no 5xx, documented status codes, content types, response headers and response schemas.
Deterministic (``derandomize``) and small (``max_examples``) so the module stays well under a
minute.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from starlette.testclient import TestClient

from shipmail.app import create_app
from shipmail.config import Settings
from shipmail.http.openapi import build_document
from shipmail.routes import OPERATIONS
from tests.dbfixtures import BACKENDS, migrated_database
from tests.dnsserver import dns_server
from tests.fakes import FakeJmap, FakeMailServer
from tests.unit.conftest import auth, make_key, verify_domain

MAX_EXAMPLES = 12
STRONG_PASSWORD = "Vq7-Lantern-Meadow-42"
#: An integer of one digit more than Python turns into an int (``ValueError`` in ``json.loads``).
HUGE = b"9" * (sys.get_int_max_str_digits() + 1)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


#: Operations this server answers only with a documented 501 ``not_supported`` (buying domains).
NOT_SUPPORTED = {"POST /domains/search", "POST /domains/register"}


class GapRecordingJmap:
    """:class:`tests.fakes.FakeJmap`, noting every request it cannot answer.

    The fake implements only some JMAP methods; a 500 during which it could not answer is a gap of
    the fake, not a defect of the app. Such calls are recorded and reported as a warning instead
    of failing the property test; every other call is checked in full.
    """

    def __init__(self) -> None:
        self.inner = FakeJmap()
        self.gaps: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self.inner(request)
        except Exception as exc:
            self.gaps.append(f"{request.method} {request.url.path} ({type(exc).__name__})")
            raise
        if request.method == "POST" and b'"unknownMethod"' in response.content:
            calls = json.loads(request.content)["methodCalls"]
            answers = json.loads(response.content)["methodResponses"]
            self.gaps += [call[0] for call, answer in zip(calls, answers, strict=False) if answer[0] == "error"]
        return response


@dataclass
class Seeded:
    """The app under test, its key and the ids the hooks mix into generated calls."""

    backend: str
    app: Starlette
    key: str
    jmap: GapRecordingJmap
    domain_id: str
    victim_domain_id: str
    mailbox_id: str
    victim_mailbox_id: str
    #: Status codes seen per operation.
    called: dict[str, set[int]] = field(default_factory=dict)
    #: Per operation, the JMAP methods the fake lacked for calls that were therefore not checked.
    fake_gaps: dict[str, set[str]] = field(default_factory=dict)


def _seed(backend: str, settings: Settings, app: Starlette, key: str, jmap: GapRecordingJmap) -> Seeded:
    with TestClient(app, base_url="http://testserver") as client:
        h = auth(key)
        stable = client.post("/v1/domains", json={"name": "stable.example"}, headers=h)
        victim = client.post("/v1/domains", json={"name": "victim.example"}, headers=h)
        assert stable.status_code == victim.status_code == 201, (stable.text, victim.text)
        verify_domain(settings, "stable.example")
        mailboxes = [
            client.post(
                "/v1/mailboxes",
                json={"domain_id": stable.json()["id"], "address": name, "generate_password": True},
                headers=h,
            )
            for name in ("hello", "victim")
        ]
        assert [r.status_code for r in mailboxes] == [201, 201], [r.text for r in mailboxes]
    return Seeded(
        backend=backend,
        app=app,
        key=key,
        jmap=jmap,
        domain_id=stable.json()["id"],
        victim_domain_id=victim.json()["id"],
        mailbox_id=mailboxes[0].json()["id"],
        victim_mailbox_id=mailboxes[1].json()["id"],
    )


# Set by the ``seeded`` fixture; the hooks' strategies read it when they draw (the strategies
# themselves are built when the tests are collected, before any fixture runs).
_current: list[Seeded] = []


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    tmp_path: Path = tmp_path_factory.mktemp("schemathesis")
    with migrated_database(str(request.param), tmp_path) as url, dns_server() as (zone, resolver):
        settings = Settings.from_env(
            data_dir=tmp_path,
            database_url=url,
            secret_key=b"test-secret",
            # One bucket per tier and key: keep generated traffic clear of 429s.
            ratelimit_read="100000/minute",
            ratelimit_write="100000/minute",
            ratelimit_verification="100000/minute",
            # The DNS checks ask the test DNS server (the stable domain's MX is published there).
            dns_resolver=resolver,
            dns_timeout=1.0,
            mx_host="mx.shipmail.test",
        )
        zone.set("stable.example", "MX", "10 mx.shipmail.test.")
        key = make_key(settings, scopes=["*"])
        jmap = GapRecordingJmap()
        # As the ``client`` fixture of conftest: the fake mail server and the fake JMAP transport.
        app = create_app(settings, mail_server=FakeMailServer(), jmap_transport=httpx.MockTransport(jmap))
        seeded = _seed(str(request.param), settings, app, key, jmap)
        _current.append(seeded)
        try:
            yield seeded
        finally:
            _current.remove(seeded)
            # schemathesis keeps an app's lifespan running for the whole process; end it here.
            schemathesis_asgi.shutdown_lifespans()


def _ids_for(seeded: Seeded, method: str, path: str) -> list[str]:
    """Seeded ids for the ``{id}`` of ``method path``: the victims only to delete them."""
    if path == "/domains/{id}" and method == "DELETE":
        return [seeded.victim_domain_id, seeded.domain_id]
    if path == "/mailboxes/{id}" and method == "DELETE":
        return [seeded.victim_mailbox_id]
    if path.startswith("/domains/"):
        return [seeded.domain_id]
    if path.startswith("/mailboxes/"):
        return [seeded.mailbox_id]
    return []


# The document the app serves (test_openapi checks they are the same); the calls go to the app in
# process through schemathesis' ASGI transport, under the document's ``/v1`` server.
schema = schemathesis.openapi.from_dict(build_document(OPERATIONS))

# Ids no client should send but any may: control characters (NUL), non-ASCII, spaces, quotes.
# Percent-encoded like schemathesis' own path values; "." and ".." would be resolved by the URL.
_awkward_ids = (
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=24)
    .filter(lambda text: text.strip(".") != "")
    .map(lambda text: quote(text, safe=""))
)


@st.composite
def _path_parameters(draw: st.DrawFn, generated: Any, method: str, path: str) -> Any:
    """The generated parameters, ``id`` replaced by a seeded or an awkward id two times in three."""
    drawn = draw(generated)
    choice = draw(st.integers(0, 2))
    ids = _ids_for(_current[-1], method, path)
    if choice == 2 or (choice == 0 and not ids):
        return drawn
    # schemathesis wraps its values (GeneratedValue); a plain dict is a value of our own.
    params = dict(getattr(drawn, "value", drawn))
    params["id"] = draw(st.sampled_from(ids)) if choice == 0 else draw(_awkward_ids)
    return params


#: Local parts the mail server reserves (the fake refuses them as Cyrus does): 422, never 500.
RESERVED_LOCAL_PARTS = ["anyone", "Anonymous", "ANYBODY", "anonymous"]
#: Passwords of the documented lengths zxcvbn does not take whole (over 72 characters), up to four
#: UTF-8 bytes per character.
LONG_PASSWORDS = [
    ("Zq8-Lantern-Meadow-" * 7)[:128],
    ("Zq8-Lantern-Meadow-" * 4)[:73],
    "Aa9" + ("日本語のパスワード" * 14)[:125],
    "Aa9Ünï" + "😀🔑" * 61,
    "a" * 72 + "Zq8-Lantern-Meadow",  # easy to guess in its first 72 characters: 422
]


@st.composite
def _mailbox_body(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "domain_id": _current[-1].domain_id,
        "address": draw(
            st.one_of(
                st.from_regex(r"[a-z][a-z0-9]{0,15}", fullmatch=True),
                st.sampled_from(RESERVED_LOCAL_PARTS),
            )
        ),
    }
    if draw(st.booleans()):
        body["generate_password"] = True
    else:
        body["password"] = draw(st.sampled_from([STRONG_PASSWORD, *LONG_PASSWORDS]))
    if draw(st.booleans()):
        # Any text, control characters (CR/LF: 422) included, up to the limit and one beyond.
        body["display_name"] = draw(
            st.one_of(st.text(max_size=20), st.sampled_from(["Ann\r\nBcc: x", "Ü" * 200, "x" * 201]))
        )
    return body


@schema.hook
def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
    op = context.operation
    if "{id}" not in op.path:
        return strategy
    return _path_parameters(strategy, op.method.upper(), op.path)


@schema.hook
def before_generate_body(context: Any, strategy: Any) -> Any:
    op = context.operation
    label = f"{op.method.upper()} {op.path}"
    if label == "POST /mailboxes":
        return st.one_of(_mailbox_body(), strategy)
    if label == "PATCH /mailboxes/{id}/password":
        passwords = st.sampled_from([STRONG_PASSWORD, *LONG_PASSWORDS])
        return st.one_of(passwords.map(lambda password: {"password": password}), strategy)
    if label == "PATCH /mailboxes/{id}":
        names = st.one_of(st.text(max_size=210), st.sampled_from(["Ann\r\nBcc: x", "a\u2028b", "Ü" * 200, None]))
        return st.one_of(names.map(lambda name: {"display_name": name}), strategy)
    if label == "PATCH /domains/{id}":
        seeded = _current[-1]
        targets = st.sampled_from([seeded.mailbox_id, seeded.victim_mailbox_id, None, "mbx_unknown"])
        return st.one_of(targets.map(lambda target: {"catch_all_mailbox_id": target}), strategy)
    if label == "POST /domains":
        names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]\.(example|test|org)", fullmatch=True)
        return st.one_of(names.map(lambda name: {"name": name}), strategy)
    return strategy


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms(case: schemathesis.Case[Any], seeded: Seeded) -> None:
    headers = auth(seeded.key)
    gaps_before = len(seeded.jmap.gaps)
    # In process through schemathesis' ASGI transport, under the document's ``/v1`` server.
    response = case.call(app=seeded.app, headers=headers)
    label = case.operation.label
    seeded.called.setdefault(label, set()).add(response.status_code)
    if response.status_code == 500 and len(seeded.jmap.gaps) > gaps_before:
        seeded.fake_gaps.setdefault(label, set()).update(seeded.jmap.gaps[gaps_before:])
        return
    checks = CHECKS
    if label in NOT_SUPPORTED and response.status_code == 501:
        checks = [c for c in CHECKS if c is not schemathesis.checks.not_a_server_error]  # documented 501
    case.validate_response(response, checks=checks, headers=headers, transport_kwargs={"app": seeded.app})


def test_every_operation_was_called(seeded: Seeded) -> None:
    """Runs after the property test: every operation was called, the seeded ids reached handlers."""
    if not seeded.called:
        pytest.skip("the property test did not run (deselected)")
    assert set(seeded.called) == {f"{op.method} {op.path}" for op in OPERATIONS}
    # Success paths were reached, not only validation errors.
    for label, status in {
        "GET /domains/{id}": 200,
        "GET /mailboxes/{id}": 200,
        "PATCH /mailboxes/{id}": 200,
        "POST /mailboxes": 201,
        "POST /domains": 201,
        "PATCH /mailboxes/{id}/password": 200,
        "DELETE /mailboxes/{id}": 204,
        "DELETE /domains/{id}": 204,
        "PATCH /domains/{id}": 200,
        "GET /domains/{id}/dns-records": 200,
        "POST /domains/{id}/verification": 200,
        "POST /domains/search": 501,
        "POST /domains/register": 501,
        "GET /capabilities": 200,
    }.items():
        assert status in seeded.called[label], (label, sorted(seeded.called[label]))
    if seeded.fake_gaps:
        gaps = "; ".join(f"{label}: {', '.join(sorted(g))}" for label, g in sorted(seeded.fake_gaps.items()))
        warnings.warn(f"500s left unchecked, the fake JMAP server lacks: {gaps}", stacklevel=1)


@pytest.mark.parametrize(
    ("method", "path", "body", "nul"),
    [
        pytest.param("GET", "/domains?cursor=abcd.%C3%A9", None, False, id="cursor-non-ascii-signature-domains"),
        pytest.param("GET", "/mailboxes?cursor=abcd.%E2%98%83", None, False, id="cursor-non-ascii-signature-mailboxes"),
        pytest.param("GET", "/domains?cursor=%C3%A9.abcd", None, False, id="cursor-non-ascii-body"),
        pytest.param("POST", "/domains", b"[" * 100_000, False, id="deeply-nested-array"),
        pytest.param("PATCH", "/mailboxes/{mailbox}", b'{"a":' * 50_000, False, id="deeply-nested-object"),
        pytest.param("POST", "/domains", b"\xff\xfe\x00", False, id="body-not-utf8"),
        pytest.param("POST", "/domains", b'{"name": "\\ud800.example"}', False, id="lone-surrogate"),
        pytest.param("POST", "/domains", b'{"name": "a\\u0000b.example"}', False, id="nul-in-domain-name"),
        pytest.param("GET", "/domains/%C3%A9%20%22", None, False, id="non-ascii-id"),
        pytest.param("GET", "/domains/%00", None, True, id="nul-domain-id"),
        pytest.param("DELETE", "/domains/a%00b", None, True, id="nul-domain-id-delete"),
        pytest.param("GET", "/mailboxes/%00", None, True, id="nul-mailbox-id"),
        pytest.param("GET", "/mailboxes?domain_id=%00", None, True, id="nul-domain-id-filter"),
        pytest.param(
            "POST",
            "/mailboxes",
            b'{"domain_id": "\\u0000", "address": "a", "generate_password": true}',
            True,
            id="nul-domain-id-body",
        ),
        pytest.param("PATCH", "/mailboxes/{mailbox}", b'{"display_name": "a\\u0000b"}', True, id="nul-display-name"),
        # Issue 8: integers beyond Python's int-string limit (4,300 digits) in bodies and queries.
        *[
            pytest.param(method, path, b'{"threshold": ' + HUGE + b"}", False, id=f"huge-integer-{label}")
            for method, path, label in [
                ("PATCH", "/mailboxes/{mailbox}/spam-filter", "spam-filter"),
                ("POST", "/mailboxes", "create-mailbox"),
                ("PUT", "/mailboxes/{mailbox}/rules", "rules"),
                ("POST", "/mailboxes/{mailbox}/sandbox/inbound", "sandbox"),
            ]
        ],
        pytest.param(
            "PATCH", "/mailboxes/{mailbox}/spam-filter", b'{"threshold": -' + HUGE + b"}", False, id="huge-negative"
        ),
        pytest.param(
            "PATCH", "/mailboxes/{mailbox}/spam-filter", b'{"threshold": 1e99999}', False, id="float-infinity"
        ),
        pytest.param("PATCH", "/mailboxes/{mailbox}/spam-filter", b'{"threshold": NaN}', False, id="nan"),
        pytest.param("GET", "/mailboxes?limit=" + HUGE.decode(), None, False, id="huge-limit"),
        pytest.param("GET", "/domains?limit=-" + HUGE.decode(), None, False, id="huge-negative-limit"),
        pytest.param(
            "POST", "/domains", json.dumps({f"k{i}": i for i in range(100_000)}).encode(), False, id="100k-unknown-keys"
        ),
        *[
            pytest.param(
                "POST",
                "/mailboxes",
                json.dumps({"domain_id": "{domain}", "address": local, "generate_password": True}).encode(),
                False,
                id=f"reserved-{local}",
            )
            for local in RESERVED_LOCAL_PARTS
        ],
        *[
            pytest.param(
                "PATCH",
                "/mailboxes/{mailbox}/password",
                json.dumps({"password": password}).encode(),
                False,
                id=f"password-{len(password)}-{len(password.encode())}-bytes",
            )
            for password in LONG_PASSWORDS
        ],
        pytest.param(
            "PATCH",
            "/mailboxes/{mailbox}",
            b'{"display_name": "Ann\\r\\nBcc: x@evil.example"}',
            False,
            id="display-crlf",
        ),
    ],
)
def test_hostile_inputs_never_answer_5xx(
    request: pytest.FixtureRequest, seeded: Seeded, method: str, path: str, body: bytes | None, nul: bool
) -> None:
    """Inputs the generator is unlikely to produce; each must answer a 4xx envelope, never a 5xx."""
    url = "/v1" + path.replace("{mailbox}", seeded.mailbox_id)
    if body is not None:
        body = body.replace(b"{domain}", seeded.domain_id.encode())
    headers = {**auth(seeded.key), "Content-Type": "application/json"}
    with schemathesis_asgi.get_client(seeded.app) as client:  # type: ignore[arg-type]
        response = client.request(method, url, data=body, headers=headers)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.json()["error"]["request_id"] == response.headers["X-Request-Id"]
