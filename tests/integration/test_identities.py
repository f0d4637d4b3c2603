"""Identities end to end on the real Cyrus: ``GET /v1/mailboxes/{id}/identities`` (one JMAP request,
display name from the mailbox), tenant and scope checks, and the official SDK's method."""

from __future__ import annotations

from typing import Any

import pytest

from shipmail.identities.service import identity_jmap_id
from tests.integration.conftest import ApiEnv
from tests.integration.test_folders import load_sdk, make_mailbox, requests


def identities(api: ApiEnv, mbx: dict[str, Any], key: str | None = None) -> Any:
    return api.client.get(f"/v1/mailboxes/{mbx['id']}/identities", headers=api.auth(key))


def test_identities_use_the_display_name_and_cost_one_request(api: ApiEnv) -> None:
    mbx = make_mailbox(api, "identities.example", "hello", display_name="Hello Team")
    identities(api, mbx)  # warm-up: fetches the JMAP session
    before = requests(api)
    r = identities(api, mbx)
    assert requests(api) - before == 1
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "mailbox_identities"
    assert (body["mailbox_id"], body["address"]) == (mbx["id"], mbx["address"])
    assert len(body["data"]) == 1
    ident = body["data"][0]
    assert set(ident) == {"object", "id", "name", "email"}
    assert ident["object"] == "mailbox_identity"
    assert (ident["name"], ident["email"]) == ("Hello Team", mbx["address"])
    assert ident["id"].startswith("idn_")
    assert identity_jmap_id(ident["id"]) == mbx["address"]  # Cyrus's identity id is the address

    # The name follows the mailbox's display name; none gives "".
    r = api.client.patch(f"/v1/mailboxes/{mbx['id']}", json={"display_name": "Renamed"}, headers=api.auth())
    assert r.status_code == 200
    assert identities(api, mbx).json()["data"][0]["name"] == "Renamed"
    r = api.client.patch(f"/v1/mailboxes/{mbx['id']}", json={"display_name": None}, headers=api.auth())
    assert r.status_code == 200
    again = identities(api, mbx).json()["data"][0]
    assert again["name"] == "" and again["id"] == ident["id"]


def test_identities_tenant_and_scope_checks(api: ApiEnv) -> None:
    mbx = make_mailbox(api, "identities-tenant.example", "ops")
    stranger = api.new_key(org="stranger")
    r = identities(api, mbx, stranger)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = api.client.get("/v1/mailboxes/mbx_nothere/identities", headers=api.auth())
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    assert identities(api, mbx, api.new_key(scopes=["mailboxes:read"])).status_code == 200
    r = identities(api, mbx, api.new_key(scopes=["domains:read", "messages:read"]))
    assert r.status_code == 403 and r.json()["error"]["type"] == "authorization_error"
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/identities")
    assert r.status_code == 401


def test_sdk_list_identities(api: ApiEnv) -> None:
    sdk = load_sdk()
    mbx = make_mailbox(api, "identities-sdk.example", "sdk", display_name="SDK Sender")
    client = sdk.client(api)
    got = client.mailboxes.list_identities(mbx["id"])
    assert got["object"] == "mailbox_identities" and got["address"] == mbx["address"]
    assert [(i["name"], i["email"]) for i in got["data"]] == [("SDK Sender", mbx["address"])]
    with pytest.raises(sdk.error) as caught:
        client.mailboxes.list_identities("mbx_nothere")
    assert getattr(caught.value, "status", None) == 404
