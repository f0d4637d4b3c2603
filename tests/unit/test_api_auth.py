"""Bearer authentication, scopes and tenant isolation (fake mail server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from authlib.oauth2.rfc6750 import InsufficientScopeError, InvalidTokenError
from starlette.requests import Request
from starlette.testclient import TestClient

from shipmail.auth.bearer import ApiKeyValidator, BearerAuth, MalformedKey, Principal, ResourceRequest
from shipmail.auth.scopes import Scope
from shipmail.config import Settings
from shipmail.keys import service as key_service
from tests.unit.conftest import auth, make_key, run_db, verify_domain


def _assert_401(r: object) -> None:
    resp = r
    assert resp.status_code == 401, resp.text  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["request_id"] == resp.headers["x-request-id"]  # type: ignore[attr-defined]
    assert resp.headers["www-authenticate"].startswith("Bearer")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Bearer sm_live_" + "A" * 40},
    ],
    ids=["missing", "empty", "basic", "malformed", "unknown"],
)
def test_bad_credentials_answer_401(client: TestClient, headers: dict[str, str]) -> None:
    _assert_401(client.get("/v1/domains", headers=headers))


def test_revoked_key_answers_401(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    assert client.get("/v1/domains", headers=auth(key)).status_code == 200
    key_id = client.get("/v1/domains", headers=auth(key))  # still valid
    assert key_id.status_code == 200

    async def revoke_all(s: object) -> None:
        for k in await key_service.list_keys(s, (await key_service.ensure_organization(s, "acme")).id):  # type: ignore[arg-type]
            await key_service.revoke_key(s, k.id)  # type: ignore[arg-type]

    run_db(settings, revoke_all)
    _assert_401(client.get("/v1/domains", headers=auth(key)))


def test_expired_key_answers_401(client: TestClient, settings: Settings) -> None:
    key = make_key(settings, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    _assert_401(client.get("/v1/domains", headers=auth(key)))
    fresh = make_key(settings, expires_at=datetime.now(UTC) + timedelta(days=1))
    assert client.get("/v1/domains", headers=auth(fresh)).status_code == 200


def test_missing_scope_answers_403(client: TestClient, settings: Settings) -> None:
    key = make_key(settings, scopes=["mailboxes:read"])
    r = client.post("/v1/domains", json={"name": "example.com"}, headers=auth(key))
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "authorization_error"
    assert "domains:write" in r.json()["error"]["message"]
    assert client.get("/v1/domains", headers=auth(key)).status_code == 403
    assert client.get("/v1/mailboxes", headers=auth(key)).status_code == 200


def test_write_implies_read_and_star_grants_all(client: TestClient, settings: Settings) -> None:
    writer = make_key(settings, scopes=["domains:write"])
    assert client.get("/v1/domains", headers=auth(writer)).status_code == 200
    assert client.post("/v1/domains", json={"name": "a.example"}, headers=auth(writer)).status_code == 201
    reader = make_key(settings, scopes=["domains:read"])
    assert client.post("/v1/domains", json={"name": "b.example"}, headers=auth(reader)).status_code == 403
    star = make_key(settings, scopes=["*"])
    for path in ("/v1/domains", "/v1/mailboxes"):
        assert client.get(path, headers=auth(star)).status_code == 200


def test_other_organisation_sees_404_never_403(client: TestClient, settings: Settings) -> None:
    a = make_key(settings, org="acme")
    b = make_key(settings, org="globex")
    dom = client.post("/v1/domains", json={"name": "acme.example"}, headers=auth(a)).json()
    verify_domain(settings, "acme.example")
    mbx = client.post(
        "/v1/mailboxes",
        json={"domain_id": dom["id"], "address": "hello", "password": "CorrectHorse9"},
        headers=auth(a),
    ).json()
    missing_dom = "dom_" + "0" * 24
    for method, path, body in [
        ("GET", f"/v1/domains/{dom['id']}", None),
        ("DELETE", f"/v1/domains/{dom['id']}", None),
        ("GET", f"/v1/mailboxes/{mbx['id']}", None),
        ("PATCH", f"/v1/mailboxes/{mbx['id']}", {"display_name": "x"}),
        ("PATCH", f"/v1/mailboxes/{mbx['id']}/password", {"password": "An0therGoodOne"}),
        ("DELETE", f"/v1/mailboxes/{mbx['id']}", None),
    ]:
        theirs = client.request(method, path, json=body, headers=auth(b))
        assert theirs.status_code == 404, (method, path, theirs.text)
        nonexistent = client.request(method, path.replace(dom["id"], missing_dom), json=body, headers=auth(b))
        assert theirs.json()["error"]["type"] == "not_found"
        assert nonexistent.status_code == 404 or "mailboxes" in path
    assert client.get("/v1/domains", headers=auth(b)).json()["data"] == []
    assert client.get("/v1/mailboxes", headers=auth(b)).json()["data"] == []
    # Another organisation cannot create a mailbox on acme's domain either.
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": dom["id"], "address": "intruder", "password": "CorrectHorse9"},
        headers=auth(b),
    )
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "domain_id"
    # acme's objects are untouched.
    assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(a)).json()["display_name"] is None


def test_scopes_go_through_authlibs_check() -> None:
    check = ApiKeyValidator.scope_insufficient
    assert not check("domains:write", ["domains:read"]) and not check("domains:write", ["domains:write"])
    assert check("domains:read", ["domains:write"]) and check("mailboxes:write", ["domains:read"])
    assert not check("*", [s.value for s in Scope]) and check("", ["domains:read"])
    assert not check("domains:read", None)  # no scope required: any valid key


def test_authlibs_protector_finds_the_key_through_the_lookup() -> None:
    held = Principal(
        key_id="key_1", organization_id="org_1", scopes=("domains:read",), expires_at=None, revoked_at=None
    )
    looked_up: list[str] = []

    def lookup(key: str) -> Principal | None:
        looked_up.append(key)
        return held if key == "sm_live_" + "A" * 40 else None

    auth = BearerAuth(lookup)

    def validate(header: str, scope: Scope | None = Scope.DOMAINS_READ) -> Principal:
        return auth.validate(
            ResourceRequest(
                Request(
                    {
                        "type": "http",
                        "method": "GET",
                        "path": "/v1/domains",
                        "query_string": b"",
                        "scheme": "http",
                        "server": ("testserver", 80),
                        "headers": [(b"authorization", header.encode())],
                    }
                )
            ),
            scope,
        )

    assert validate("Bearer sm_live_" + "A" * 40) is held
    assert validate("bearer  sm_live_" + "A" * 40, None) is held
    with pytest.raises(InsufficientScopeError):
        validate("Bearer sm_live_" + "A" * 40, Scope.DOMAINS_WRITE)
    with pytest.raises(MalformedKey):
        validate("Bearer sm_live_short")
    with pytest.raises(InvalidTokenError):
        validate("Bearer sm_live_" + "B" * 40)
    assert looked_up == ["sm_live_" + "A" * 40] * 3 + ["sm_live_" + "B" * 40]  # never a malformed one
