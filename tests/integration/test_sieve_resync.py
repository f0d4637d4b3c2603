"""``shipmail mailboxes resync-sieve``: every mailbox's script rebuilt from the database."""

from __future__ import annotations

from typing import Any

from shipmail.delivery.service import reinstall_all
from shipmail.jmap.request import Request
from shipmail.jmap.sieve_script import URN_SIEVE_CYRUS, SieveScriptGet
from tests.integration.conftest import ApiEnv


def _scripts(api: ApiEnv, address: str) -> list[dict[str, Any]]:
    svc = api.client.app.state.services  # type: ignore[attr-defined]

    async def get() -> list[dict[str, Any]]:
        request = Request(capabilities=(URN_SIEVE_CYRUS,))
        call = request.add(SieveScriptGet(ids=None))
        results = await svc.jmap.call(address, request)
        listed: list[dict[str, Any]] = results.get(call)["list"]
        return listed

    assert api.client.portal is not None
    return api.client.portal.call(get)


def test_reinstall_all_replaces_every_active_script(api: ApiEnv) -> None:
    dom = api.verified_domain("resync.example")
    addresses = []
    for local in ("one", "two"):
        r = api.client.post(
            "/v1/mailboxes",
            json={"domain_id": dom["id"], "address": local, "generate_password": True},
            headers=api.auth(),
        )
        assert r.status_code == 201, r.text
        addresses.append(r.json()["address"])
    before = {a: [s["id"] for s in _scripts(api, a) if s["isActive"]] for a in addresses}
    assert all(len(ids) == 1 for ids in before.values())

    svc = api.client.app.state.services  # type: ignore[attr-defined]
    assert api.client.portal is not None
    installed, failed = api.client.portal.call(reinstall_all, svc)
    assert (installed, failed) == (2, [])
    for address in addresses:
        scripts = _scripts(api, address)
        active = [s["id"] for s in scripts if s["isActive"]]
        assert len(scripts) == 1 and len(active) == 1 and active != before[address]
