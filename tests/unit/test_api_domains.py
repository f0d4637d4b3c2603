"""Domains: create, list with cursors, get, delete (on SQLite and, when configured, PostgreSQL)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from shipmail.config import Settings
from tests.unit.conftest import auth, make_key, verify_domain

pytestmark = pytest.mark.usefixtures("db_backend")


def test_create_get_delete(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    r = client.post("/v1/domains", json={"name": "Example.COM."}, headers=auth(key))
    assert r.status_code == 201, r.text
    dom = r.json()
    assert dom["object"] == "domain" and dom["id"].startswith("dom_")
    assert dom["name"] == "example.com" and dom["status"] == "pending" and dom["verified_at"] is None
    assert client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json() == dom
    verify_domain(settings, "example.com")
    got = client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).json()
    assert got["status"] == "verified" and got["verified_at"] is not None
    assert client.delete(f"/v1/domains/{dom['id']}", headers=auth(key)).status_code == 204
    assert client.get(f"/v1/domains/{dom['id']}", headers=auth(key)).status_code == 404
    assert client.delete(f"/v1/domains/{dom['id']}", headers=auth(key)).status_code == 404


@pytest.mark.parametrize(
    "name", ["", "localhost", "-bad.example", "a..b", "exa mple.com", "x" * 64 + ".com", "1.2.3.4"]
)
def test_invalid_names_are_422(client: TestClient, settings: Settings, name: str) -> None:
    r = client.post("/v1/domains", json={"name": name}, headers=auth(make_key(settings)))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "name"


def test_duplicate_is_409_across_organisations(client: TestClient, settings: Settings) -> None:
    a, b = make_key(settings, org="a"), make_key(settings, org="b")
    assert client.post("/v1/domains", json={"name": "dup.example"}, headers=auth(a)).status_code == 201
    assert client.post("/v1/domains", json={"name": "DUP.example"}, headers=auth(a)).status_code == 409
    r = client.post("/v1/domains", json={"name": "dup.example"}, headers=auth(b))
    assert r.status_code == 409 and r.json()["error"]["type"] == "conflict"


def test_cursor_pagination(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    names = [f"d{i}.example" for i in range(7)]
    for n in names:
        assert client.post("/v1/domains", json={"name": n}, headers=auth(key)).status_code == 201
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/domains", params=params, headers=auth(key)).json()
        pages += 1
        seen += [d["name"] for d in body["data"]]
        assert body["pagination"]["limit"] == 3
        if not body["pagination"]["has_more"]:
            assert body["pagination"]["next_cursor"] is None
            break
        cursor = body["pagination"]["next_cursor"]
    assert seen == names and pages == 3
    default = client.get("/v1/domains", headers=auth(key)).json()
    assert default["pagination"]["limit"] == 25 and len(default["data"]) == 7


def test_bad_cursors_are_422(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    for i in range(3):
        client.post("/v1/domains", json={"name": f"c{i}.example"}, headers=auth(key))
    cursor = client.get("/v1/domains?limit=1", headers=auth(key)).json()["pagination"]["next_cursor"]
    assert cursor
    for bad in ["garbage", cursor[:-2] + "xx", "x" + cursor, cursor + "."]:
        r = client.get("/v1/domains", params={"cursor": bad}, headers=auth(key))
        assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "cursor"
    # A domains cursor is not a mailboxes cursor, nor another organisation's.
    assert client.get("/v1/mailboxes", params={"cursor": cursor}, headers=auth(key)).status_code == 422
    other = make_key(settings, org="other")
    assert client.get("/v1/domains", params={"cursor": cursor}, headers=auth(other)).status_code == 422


def test_delete_with_mailboxes_is_409(client: TestClient, settings: Settings) -> None:
    key = make_key(settings)
    dom = client.post("/v1/domains", json={"name": "busy.example"}, headers=auth(key)).json()
    verify_domain(settings, "busy.example")
    mbx = client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "a", "generate_password": True}, headers=auth(key)
    ).json()
    r = client.delete(f"/v1/domains/{dom['id']}", headers=auth(key))
    assert r.status_code == 409 and r.json()["error"]["type"] == "conflict"
    assert client.delete(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).status_code == 204
    assert client.delete(f"/v1/domains/{dom['id']}", headers=auth(key)).status_code == 204
