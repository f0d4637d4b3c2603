"""Webhooks end to end with the real ``shipmail serve``: the inbound gateway (its own supervised
process) records the delivery durably before answering 250; the API process, whose job worker
records its event and sends webhooks, is frozen and then killed with ``kill -9`` before it could
act; the supervisor restarts it and the event reaches the receiver (once, or at worst twice with
the same ``webhook-id``)."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import time

import httpx

from tests.integration.conftest import require_root
from tests.integration.corpus import corpus_bytes, unique
from tests.integration.serve_proc import ServeProcess
from tests.integration.webhook_receiver import Receiver, verify


def test_kill_9_of_the_api_between_the_250_and_the_webhook_attempt() -> None:
    require_root("shipmail serve")
    env = {"SHIPMAIL_WEBHOOK_ALLOW_PRIVATE": "1", "SHIPMAIL_WEBHOOK_RETRY_BASE": "0.2"}
    serve = ServeProcess("shipmail-hooks-e2e-", extra_env=env)
    try:
        with Receiver() as receiver:
            serve.start(timeout=120)  # generous: this machine is shared
            run(serve, receiver)
    finally:
        print(serve.output())
        serve.close()


def run(serve: ServeProcess, receiver: Receiver) -> None:
    key = serve.create_key("acme")
    with httpx.Client(base_url=serve.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        domain = http.post("/v1/domains", json={"name": "hooks-e2e.example"}).json()
        serve.verify_domain("hooks-e2e.example")
        r = http.post("/v1/mailboxes", json={"domain_id": domain["id"], "address": "hi", "generate_password": True})
        assert r.status_code == 201, r.text
        mailbox = r.json()
        r = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["message.received"]})
        assert r.status_code == 201, r.text
        secret = r.json()["secret"]

        api = serve.api_pid()
        assert api is not None
        os.kill(api, signal.SIGSTOP)  # the API and its job worker can no longer act
        try:
            raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), "e2e")
            with smtplib.LMTP("127.0.0.1", serve.lmtp_port, timeout=30) as lmtp:
                assert lmtp.sendmail("s@example.org", [mailbox["address"]], raw) == {}  # Cyrus's 250
            time.sleep(1.5)
            assert receiver.requests == []  # recorded, not sent: only the API sends
        finally:
            os.kill(api, signal.SIGKILL)
        got = receiver.wait_for(1, timeout=90)
        time.sleep(2.0)
        got = list(receiver.requests)
        assert 1 <= len(got) <= 2 and len({g.headers["webhook-id"] for g in got}) == 1, got
        assert all(verify(secret, g) for g in got)
        assert serve.api_pid() not in (None, api)  # a new API process sent it
        body = json.loads(got[0].body)
        listed = http.get(f"/v1/mailboxes/{mailbox['id']}/inbox/messages").json()["data"]
        assert body["type"] == "message.received" and body["data"]["id"] == listed[0]["id"]
