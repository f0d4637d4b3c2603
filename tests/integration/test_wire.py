"""Wire conformance on the real Cyrus (issue 9): ``Idempotency-Key`` on folder create and sandbox
inbound, 405 with its own error type, ``X-RateLimit-*`` on every 4xx of a limited operation, the
thread list's reference defaults and parameters."""

from __future__ import annotations

import secrets
import threading
from typing import Any

import httpx

from tests.integration.conftest import ApiEnv
from tests.integration.corpus import ids_by_message_id, jmap
from tests.integration.live_app import live_server

IDEM = "Idempotency-Key"


def _mailbox(api: ApiEnv, label: str, key: str | None = None) -> dict[str, Any]:
    return api.new_mailbox(f"{label}-{secrets.token_hex(4)}.example", f"m{secrets.token_hex(3)}", key)


def _cyrus_folders(api: ApiEnv, address: str) -> list[str]:
    responses = jmap(api, address, [["Mailbox/get", {"properties": ["name"]}, "m"]])
    return sorted(m["name"] for m in responses[0][1]["list"])


def test_retried_folder_create_answers_the_same_201_and_creates_one_folder(api: ApiEnv) -> None:
    mbx = _mailbox(api, "idem-folder")
    url = f"/v1/mailboxes/{mbx['id']}/folders"
    headers = {**api.auth(), IDEM: "folder-create-1"}
    first = api.client.post(url, json={"name": "Projects"}, headers=headers)
    assert first.status_code == 201, first.text
    again = api.client.post(url, json={"name": "Projects"}, headers=headers)
    assert again.status_code == 201, again.text  # was 409 (the folder exists) before issue 9
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert _cyrus_folders(api, mbx["address"]).count("Projects") == 1
    # Same key, other body: 422, nothing created.
    other = api.client.post(url, json={"name": "Other"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["details"][0]["code"] == "idempotency_key_reused"
    assert "Other" not in _cyrus_folders(api, mbx["address"])
    # Another API key of the organisation, same Idempotency-Key: its own request (409: exists).
    second_key = api.new_key()
    r = api.client.post(url, json={"name": "Projects"}, headers={**api.auth(second_key), IDEM: "folder-create-1"})
    assert r.status_code == 409 and "idempotent-replayed" not in r.headers
    r = api.client.post(url, json={"name": "Later"}, headers={**api.auth(second_key), IDEM: "folder-create-1"})
    assert r.status_code == 422  # that key's use of it was the Projects request


def test_retried_sandbox_inbound_delivers_once(api: ApiEnv) -> None:
    mbx = _mailbox(api, "idem-sandbox")
    url = f"/v1/mailboxes/{mbx['id']}/sandbox/inbound"
    body = {"from": "alice@sender.example", "subject": "Once only", "text": "Delivered once.\n"}
    headers = {**api.auth(), IDEM: "inbound-1"}
    first = api.client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = api.client.post(url, json=body, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert len(ids_by_message_id(api, mbx["address"])) == 1
    # Without the key, the same request is a second delivery.
    assert api.client.post(url, json=body, headers=api.auth()).status_code == 201
    assert len(ids_by_message_id(api, mbx["address"])) == 2


def test_concurrent_duplicate_folder_creates_run_once(api: ApiEnv) -> None:
    """Two clients send the same create at once over real sockets: one folder, two equal 201s."""
    mbx = _mailbox(api, "idem-race")
    results: list[httpx.Response] = []
    with live_server(api) as base:
        url = f"{base}/v1/mailboxes/{mbx['id']}/folders"
        headers = {**api.auth(), IDEM: "race-1"}
        barrier = threading.Barrier(4)

        def send() -> None:
            barrier.wait()
            results.append(httpx.post(url, json={"name": "Raced"}, headers=headers, timeout=30))

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [r.status_code for r in results] == [201] * 4, [r.text for r in results]
    assert len({r.text for r in results}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in results) == 3
    assert _cyrus_folders(api, mbx["address"]).count("Raced") == 1


def test_unsupported_method_is_405_method_not_allowed(api: ApiEnv) -> None:
    mbx = _mailbox(api, "wire-405")
    for method, path in [
        ("PUT", "/v1/domains"),
        ("DELETE", f"/v1/mailboxes/{mbx['id']}/folders"),
        ("POST", f"/v1/mailboxes/{mbx['id']}/inbox/threads"),
    ]:
        r = api.client.request(method, path, headers=api.auth())
        assert r.status_code == 405, (method, path, r.text)
        assert r.json()["error"]["type"] == "method_not_allowed"
        assert r.headers["allow"]


def test_rate_limit_headers_on_every_4xx_of_a_limited_operation(api: ApiEnv) -> None:
    mbx = _mailbox(api, "wire-rl")
    base = f"/v1/mailboxes/{mbx['id']}"
    no_scope = api.new_key(scopes=["domains:read"])
    assert api.client.post(f"{base}/folders", json={"name": "Dup"}, headers=api.auth()).status_code == 201
    cases = [
        ("GET", f"{base}/inbox/threads/thr_nothere", None, api.key, 404),
        ("POST", f"{base}/folders", {"name": "Dup"}, api.key, 409),
        ("POST", f"{base}/folders", {"name": 5}, api.key, 422),
        ("GET", f"{base}/inbox/threads?limit=0", None, api.key, 422),
        ("GET", f"{base}/inbox/threads", None, no_scope, 403),
        ("POST", f"{base}/folders", {"name": "x" * (api.settings.max_body_bytes + 1)}, api.key, 413),
    ]
    for method, path, body, key, status in cases:
        r = api.client.request(method, path, json=body, headers=api.auth(key))
        assert r.status_code == status, (path, r.text)
        for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
            assert r.headers[header].isdigit(), (path, status, header)


def test_thread_list_default_limit_and_reply_parameters(api: ApiEnv) -> None:
    mbx = _mailbox(api, "wire-threads")
    for i in range(27):
        msg = (
            f"From: a@example.org\r\nTo: {mbx['address']}\r\nSubject: thread {i}\r\n"
            f"Message-ID: <t{i}-{secrets.token_hex(4)}@example.org>\r\n\r\nbody\r\n"
        ).encode()
        assert api.lmtp(mbx["address"], msg) == {}
    url = f"/v1/mailboxes/{mbx['id']}/inbox/threads"
    page = api.client.get(url, headers=api.auth()).json()
    assert page["pagination"]["limit"] == 25 and len(page["data"]) == 25 and page["pagination"]["has_more"]
    ok = api.client.get(url, params={"sort_by": "last_message_at", "order": "desc"}, headers=api.auth())
    assert ok.status_code == 200 and [t["id"] for t in ok.json()["data"]] == [t["id"] for t in page["data"]]
    # The reply-state parameters are served (issue 11): every thread here needs a reply.
    queue = api.client.get(url, params={"reply_state": "needs_reply", "limit": 100}, headers=api.auth())
    assert queue.status_code == 200 and len(queue.json()["data"]) == 27, queue.text
    assert queue.json()["summary"]["needs_reply"] == 27
    for params, code in [
        ({"reply_state": "bogus"}, "literal_error"),
        ({"attention_state": "follow_up_due"}, "not_supported"),  # Shipmail SDK 0.6.7's name
        ({"sort_by": "subject"}, "literal_error"),
        ({"order": "sideways"}, "literal_error"),
    ]:
        r = api.client.get(url, params=params, headers=api.auth())
        assert r.status_code == 422, (params, r.text)
        (detail,) = r.json()["error"]["details"]
        assert (detail["field"], detail["code"]) == (next(iter(params)), code)
