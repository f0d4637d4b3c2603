"""The API app served by a real HTTP server (uvicorn in a thread) on the ``api`` fixture's
database and Cyrus: for tests that need a real socket (streaming, the official SDK)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from shipmail.app import create_app
from tests.integration.conftest import ApiEnv, free_port, gateway_mail_server


class LiveUrl(str):
    """The base URL (``http://127.0.0.1:<port>``); ``.app`` is the served Starlette app."""

    app: Any


@contextmanager
def live_server(api: ApiEnv) -> Iterator[LiveUrl]:
    """Serve a second app on ``api``'s settings (same database, same Cyrus); yields the base URL
    (``http://127.0.0.1:<port>``, with ``.app``). The server stops when the block ends."""
    inst = api.cyrus.instance
    app = create_app(api.settings, mail_server_factory=lambda s: gateway_mail_server(inst, s))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="live-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live app did not start")
        time.sleep(0.02)
    try:
        url = LiveUrl(f"http://127.0.0.1:{port}")
        url.app = app
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
