"""The access-control matrix: every operation of the API against three kinds of caller.

Columns, for organisation acme's mailbox A (and its mailbox B):

1. the owner's key (``*``): reaches A;
2. another organisation's key: every operation on A answers exactly what an id that does not
   exist answers (404, same body but the request id), never 403;
3. an acme key limited to mailbox B (``shipmail keys create --mailbox B``): exactly the same as
   column 2 for A, works on B, lists only B, and is refused (403) every operation that is not
   about one mailbox: creating mailboxes, all domain operations.

Rows: every operation in :data:`shipmail.routes.OPERATIONS` (new operations join the matrix by
being registered). Fake mail server.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipmail.config import Settings
from shipmail.http.routing import Operation
from shipmail.routes import OPERATIONS
from tests.unit.conftest import auth, make_key, verify_domain

MISSING_MAILBOX = "mbx_" + "0" * 24
_PARAM = re.compile(r"\{([a-z_]+)\}")


def _path(op: Operation, mailbox_id: str, domain_id: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "id":
            return domain_id if op.path.startswith("/domains") else mailbox_id
        return "x_" + "0" * 24  # any sub-resource id: never reached when the mailbox is refused

    return "/v1" + _PARAM.sub(fill, op.path)


def _call(client: TestClient, op: Operation, path: str, key: str) -> Any:
    body: dict[str, Any] | None = {} if op.body is not None else None
    return client.request(op.method, path, json=body, headers=auth(key))


def _comparable(r: Any, mailbox_id: str) -> tuple[int, Any]:
    """Status and body, without the request id and with the mailbox id asked for as ``<id>``."""
    try:
        data = r.json()
    except ValueError:
        return r.status_code, r.text.replace(mailbox_id, "<id>")
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        data["error"].pop("request_id", None)
        data["error"]["message"] = data["error"]["message"].replace(mailbox_id, "<id>")
    return r.status_code, data


@pytest.fixture
def world(client: TestClient, settings: Settings) -> dict[str, Any]:
    owner = make_key(settings, org="acme")
    dom = client.post("/v1/domains", json={"name": "matrix.example"}, headers=auth(owner)).json()
    verify_domain(settings, "matrix.example")
    boxes = {}
    for local in ("a", "b"):
        r = client.post(
            "/v1/mailboxes",
            json={"domain_id": dom["id"], "address": local, "generate_password": True},
            headers=auth(owner),
        )
        assert r.status_code == 201, r.text
        boxes[local] = r.json()["id"]
    limited = make_key(settings, org="acme", mailbox_ids=[boxes["b"]])
    other = make_key(settings, org="globex")
    return {"owner": owner, "other": other, "limited": limited, "domain": dom["id"], **boxes}


MAILBOX_OPS = [op for op in OPERATIONS if op.scope is not None and op.path.startswith("/mailboxes/{id}")]
OTHER_OPS = [op for op in OPERATIONS if op.scope is not None and not op.path.startswith("/mailboxes/{id}")]


@pytest.mark.parametrize("op", MAILBOX_OPS, ids=lambda op: op.operation_id)
def test_mailbox_operations(client: TestClient, world: dict[str, Any], op: Operation) -> None:
    a, b, dom = world["a"], world["b"], world["domain"]
    missing = _comparable(_call(client, op, _path(op, MISSING_MAILBOX, dom), world["owner"]), MISSING_MAILBOX)
    assert missing[0] in (404, 422), missing  # 422: the body is checked before the mailbox
    # Column 2: another organisation.
    assert _comparable(_call(client, op, _path(op, a, dom), world["other"]), a) == missing
    # Column 3: a key limited to B, on A: the same answer as for an id that does not exist,
    # with that key and with the owner's.
    # with that key (the limit is checked before the body and the query, so that holds for any
    # input) and, where the owner's request gets as far as the mailbox, with the owner's.
    limited_on_a = _comparable(_call(client, op, _path(op, a, dom), world["limited"]), a)
    limited_missing = _call(client, op, _path(op, MISSING_MAILBOX, dom), world["limited"])
    assert limited_on_a == _comparable(limited_missing, MISSING_MAILBOX)
    assert limited_on_a[0] == 404 and limited_on_a[1]["error"]["message"] == "No mailbox with id '<id>'."
    if missing[0] == 404:
        assert limited_on_a == missing
    if op.method == "GET":
        # Columns 1 and 3 on their own mailbox: the mailbox is found (a sub-resource may not be).
        for key, mailbox in ((world["owner"], a), (world["limited"], b)):
            status, data = _comparable(_call(client, op, _path(op, mailbox, dom), key), mailbox)
            assert status not in (401, 403), (op.operation_id, status, data)  # the fake JMAP may 500
            if status == 404:
                assert not data["error"]["message"].startswith("No mailbox with id"), data


@pytest.mark.parametrize("op", OTHER_OPS, ids=lambda op: op.operation_id)
def test_other_operations(client: TestClient, world: dict[str, Any], op: Operation) -> None:
    path = _path(op, world["a"], world["domain"])
    limited = _call(client, op, path, world["limited"])
    if (op.method, op.path) == ("GET", "/mailboxes"):
        assert limited.status_code == 200
        assert [m["id"] for m in limited.json()["data"]] == [world["b"]]
        owner = client.get("/v1/mailboxes", headers=auth(world["owner"])).json()["data"]
        assert sorted(m["id"] for m in owner) == sorted([world["a"], world["b"]])
        assert client.get("/v1/mailboxes", headers=auth(world["other"])).json()["data"] == []
    elif (op.method, op.path) == ("GET", "/capabilities"):
        assert limited.status_code == 200
        assert limited.json()["constraints"]["mailbox_ids"] == [world["b"]]
        owner = client.get("/v1/capabilities", headers=auth(world["owner"])).json()
        assert owner["constraints"]["mailbox_ids"] is None
    else:
        # Creating mailboxes, every domain operation, anything not about one mailbox: 403.
        assert limited.status_code == 403, (op.operation_id, limited.text)
        assert limited.json()["error"]["type"] == "authorization_error"
        if "{id}" in op.path:
            other = _call(client, op, path, world["other"])
            assert other.status_code in (404, 422), (op.operation_id, other.text)


def test_limited_key_needs_mailboxes_of_its_organisation(settings: Settings, world: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="no mailbox"):
        make_key(settings, org="globex", mailbox_ids=[world["a"]])
    with pytest.raises(ValueError, match="no mailbox"):
        make_key(settings, org="acme", mailbox_ids=[MISSING_MAILBOX])
