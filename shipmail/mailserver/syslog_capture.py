"""Catch Cyrus's syslog lines while it starts, when no syslog daemon listens on ``/dev/log``.

Cyrus logs only through syslog(3), and the machines this runs on usually have no syslog daemon, so
a start-up failure ("cannot find executable for service ...", "configdirectory option not
specified") would be invisible. :class:`SyslogWindow` binds a datagram socket on ``/dev/log`` for
the duration of a ``with`` block, ONLY if nothing is there already, drains it from a thread (a full
datagram queue would block the senders) and keeps the last lines in memory. On exit it closes the
socket and removes the path if it is still its own. Nothing is written anywhere.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import socket
import threading
from pathlib import Path
from types import TracebackType

logger = logging.getLogger("shipmail.mailserver.syslog_capture")

_PRIORITY = re.compile(r"^<\d{1,3}>")


class SyslogWindow:
    """``with SyslogWindow() as window: ...; window.lines()`` -> the last ``keep`` lines."""

    def __init__(self, path: Path = Path("/dev/log"), keep: int = 200) -> None:
        self.path = path
        self._lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._sock: socket.socket | None = None
        self._inode: int | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether this window is actually capturing (False if someone else serves the path)."""
        return self._sock is not None

    def __enter__(self) -> SyslogWindow:
        if self.path.exists() or self.path.is_symlink() or not self.path.parent.is_dir():
            return self
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o666)
            self._inode = os.stat(self.path).st_ino
        except OSError as exc:
            sock.close()
            logger.debug("not capturing syslog on %s: %s", self.path, exc)
            return self
        sock.settimeout(0.1)
        self._sock = sock
        self._thread = threading.Thread(target=self._drain, name="shipmail-syslog-window", daemon=True)
        self._thread.start()
        return self

    def _drain(self) -> None:
        sock = self._sock
        assert sock is not None
        while self._sock is not None:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                continue
            text = _PRIORITY.sub("", data.decode("utf-8", "replace")).rstrip("\n\0")
            with self._lock:
                self._lines.append(text)

    def lines(self) -> list[str]:
        """The lines caught so far (oldest first), without their ``<priority>`` prefix."""
        with self._lock:
            return list(self._lines)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:  # wake the drain thread at once
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waker:
                waker.sendto(b"", str(self.path))
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        sock.close()
        try:
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        except OSError:
            pass
