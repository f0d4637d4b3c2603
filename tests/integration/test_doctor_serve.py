"""Crash consistency end to end with the real ``shipmail serve``: ``kill -9`` of the API in the
middle of a mailbox create leaves a ``provisioning`` row and a half-made account; the next start
rolls it back before the API answers, ``shipmail doctor`` then reports 0 differences, and the
address can be created. ``shipmail doctor`` / ``--repair`` as CLI commands: one line per
difference, exit 1 while any is left, 0 when clean."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from shipmail.config import Settings
from shipmail.mailserver.cyrus import CyrusInstance
from shipmail.mailserver.cyrus_server import CyrusMailServer
from tests.integration.conftest import require_root
from tests.integration.serve_proc import ServeProcess


@pytest.fixture
def serve() -> Iterator[ServeProcess]:
    require_root("shipmail serve")
    # JMAP calls wait up to 30 s: the window in which the test kills the API mid-create.
    proc = ServeProcess("shipmail-doctor-e2e-", extra_env={"SHIPMAIL_JMAP_TIMEOUT": "30"})
    try:
        yield proc
    finally:
        print(proc.output())
        proc.close()


def mail_server(serve: ServeProcess) -> CyrusMailServer:
    """The admin's view of the instance ``serve`` runs (credentials from its data directory)."""
    settings = Settings.from_env(
        data_dir=serve.data_dir,
        jmap_port=serve.jmap_port,
        lmtp_port=serve.lmtp_port,
        imap_port=serve.imap_port,
    )
    return CyrusMailServer.from_instance(CyrusInstance.from_settings(settings), timeout=5.0)


def account_exists(serve: ServeProcess, address: str) -> bool:
    async def go() -> bool:
        server = mail_server(serve)
        try:
            return await server.exists(address)
        finally:
            await server.aclose()

    return asyncio.run(go())


def mailbox_states(serve: ServeProcess) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(serve.data_dir / "shipmail.db", timeout=10)) as db:
        return dict(db.execute("SELECT address, state FROM mailboxes").fetchall())


def wait_for(what: str, condition: object, timeout: float = 25.0) -> None:
    """Poll ``condition()`` until it is true (the sentinel), failing after ``timeout`` seconds."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_kill_9_mid_create_is_rolled_back_at_start_up(serve: ServeProcess) -> None:
    serve.start()
    key = serve.create_key("acme")
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=serve.base_url, headers=auth, timeout=15) as http:
        r = http.post("/v1/domains", json={"name": "crash.example"})
        assert r.status_code == 201, r.text
        domain_id = r.json()["id"]
    serve.verify_domain("crash.example")
    assert serve.cli("doctor").stdout.strip().startswith("no differences")

    # Freeze Cyrus's JMAP service: the create provisions the account over IMAP, then waits on
    # JMAP (its system folders); that is where the API is killed.
    frozen = [pid for pid, cmd in serve.instance_processes() if "/httpd " in f"{cmd} "]
    assert frozen, serve.instance_processes()
    body = {"domain_id": domain_id, "address": "crash", "generate_password": True}

    def post() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the API dies under it
            httpx.post(f"{serve.base_url}/v1/mailboxes", json=body, headers=auth, timeout=60)

    request = threading.Thread(target=post, daemon=True)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        request.start()
        wait_for("the provisioning row", lambda: mailbox_states(serve).get("crash@crash.example") == "provisioning")
        wait_for("the account", lambda: account_exists(serve, "crash@crash.example"))
        api = serve.api_pid()
        assert api is not None and serve.proc is not None
        os.kill(api, signal.SIGKILL)  # the API process (uvicorn, one worker) dies mid-create,
        os.kill(serve.proc.pid, signal.SIGKILL)  # and its supervisor too, before it restarts it
        serve.proc.wait(15)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    request.join(30)
    assert mailbox_states(serve) == {"crash@crash.example": "provisioning"}
    assert account_exists(serve, "crash@crash.example")

    # The next start resolves it before the API answers: the create is rolled back.
    serve.start()
    assert "provisioning -> rolled back (the half-made account was removed)" in serve.output()
    assert mailbox_states(serve) == {}
    assert not account_exists(serve, "crash@crash.example")
    assert serve.cli("doctor").returncode == 0
    with httpx.Client(base_url=serve.base_url, headers=auth, timeout=15) as http:
        r = http.post("/v1/mailboxes", json=body)
        assert r.status_code == 201, r.text
    assert serve.cli("doctor").stdout.strip().startswith("no differences")


def test_doctor_cli_reports_and_repairs(serve: ServeProcess) -> None:
    serve.start()
    key = serve.create_key("acme")
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=serve.base_url, headers=auth, timeout=15) as http:
        r = http.post("/v1/domains", json={"name": "cli.example"})
        assert r.status_code == 201, r.text
        serve.verify_domain("cli.example")
        r = http.post("/v1/mailboxes", json={"domain_id": r.json()["id"], "address": "kept", "generate_password": True})
        assert r.status_code == 201, r.text
        kept = r.json()

        async def behind_its_back() -> None:
            server = mail_server(serve)
            try:
                await server.provision("stray@cli.example")
                await server.deprovision("kept@cli.example")
            finally:
                await server.aclose()

        asyncio.run(behind_its_back())
        found = serve.cli("doctor", check=False)
        assert found.returncode == 1, found.stdout + found.stderr
        lines = found.stdout.strip().splitlines()
        assert lines[0].split()[:3] == ["account-without-row", "stray@cli.example", "-"]
        assert lines[0].endswith("an account no mailbox owns; it holds 0 message(s)")
        assert lines[1].split()[:3] == ["row-without-account", "kept@cli.example", kept["id"]]
        assert lines[2].startswith("2 difference(s) between the database and the mail server")
        assert serve.cli("doctor", "--purge-orphans", check=False).returncode == 2  # only with --repair

        repaired = serve.cli("doctor", "--repair")
        assert "repaired account-without-row" in " ".join(repaired.stdout.split()), repaired.stdout
        assert repaired.stdout.strip().splitlines()[-1].startswith("no differences"), repaired.stdout
        assert serve.cli("doctor").returncode == 0
        assert http.get(f"/v1/mailboxes/{kept['id']}/inbox/messages").status_code == 200
