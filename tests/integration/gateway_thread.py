"""The inbound gateway (:mod:`shipmail.inbound.gateway`) in a thread of its own with its own event
loop, in front of the session Cyrus's LMTP socket: what ``shipmail serve`` runs as its
``serve-gateway`` process, for the in-process ``api`` fixture."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from shipmail.inbound.backend import Target
from shipmail.inbound.gateway import running_gateway
from shipmail.inbound.journal import journal_path
from shipmail.mailserver.cyrus import CyrusInstance
from shipmail.mailserver.cyrus_server import CyrusMailServer
from shipmail.mailserver.supervisor import bind_listener


class GatewayThread:
    """``with GatewayThread(database_url, instance, data_dir) as gw:`` serves LMTP on
    127.0.0.1:``gw.port``, its journal in ``data_dir`` (:func:`shipmail.inbound.journal.journal_path`)."""

    def __init__(
        self, database_url: str, instance: CyrusInstance, data_dir: Path, *, jmap_timeout: float = 2.0
    ) -> None:
        self.database_url = database_url
        self.journal = journal_path(data_dir)
        self.instance = instance
        self.jmap_timeout = jmap_timeout
        self.sock = bind_listener("127.0.0.1", 0)
        self.port: int = self.sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="inbound-gateway", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        mail = CyrusMailServer.from_instance(self.instance, timeout=self.jmap_timeout)
        try:
            async with running_gateway(
                database_url=self.database_url,
                journal=self.journal,
                mail=mail,
                backend=Target(path=self.instance.lmtp_socket),
                sock=self.sock,
                jmap_timeout=self.jmap_timeout,
            ):
                self._ready.set()
                await self._stop.wait()
        finally:
            await mail.aclose()

    def start(self) -> GatewayThread:
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"the inbound gateway did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.sock.close()

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
