"""A password checker for Cyrus that speaks saslauthd's protocol and checks argon2id hashes.

Cyrus (``sasl_pwcheck_method: auxprop saslauthd``, ``sasl_saslauthd_path: <socket>``) asks this
daemon whether a mailbox login is right; the hashes stay in the service's database, so Cyrus never
holds a password (sasldb would keep them in plain text). Protocol (one request per connection,
as libsasl's ``saslauthd_verify_password`` sends it):

* request: four fields, each a big-endian ``uint16`` length then that many bytes, in the order
  login, password, service (``imap``, ``HTTP``...), realm. libsasl splits ``hello@example.com`` at
  the last ``@``: login ``hello``, realm ``example.com``; no domain gives an empty realm.
* reply: a ``uint16`` length then ``OK`` or ``NO <reason>``; only ``OK...`` logs the user in.

Rules: the address is ``login@realm`` lower-cased; an empty realm is refused (a login without a
domain, including a failed admin login, which libsasl forwards as ``admin`` with an empty realm);
``lookup(address)`` gives the argon2id hash, or a sequence of :class:`Credential` (every password
that opens the account: the mailbox password and its app passwords), or None; the password is
checked with argon2-cffi against each in turn, and the first that matches logs in (its ``used``
callback, if any, is then called: the app passwords' ``last_used_at``). For an unknown address
(None or no credential) a dummy hash is verified too, so the answer time does not reveal which addresses
exist. A request over 8 KiB (libsasl's own limit), a read slower than ``read_timeout``, a malformed
field, a lookup that raises: all answer ``NO`` and the daemon keeps serving. A password is checked
whole, whatever its length: the API's longest (128 characters, at most 512 UTF-8 bytes, see
:mod:`shipmail.mailboxes.passwords`) fits the request limit many times over, argon2 has no length
limit, and nothing here truncates (measured over IMAP and JMAP Basic against Cyrus in
tests/integration/test_hostile_cyrus.py: changing the 128th character is refused). Passwords are
never logged, kept or put in an exception message.

Health: a request with service :data:`HEALTH_SERVICE` and an empty login and password is answered
without a password check: ``NO healthy`` when the lookup works (it is asked about
:data:`HEALTH_ADDRESS`), ``NO unhealthy`` when it raises. Both start with ``NO``: a health request
logs nobody in. :func:`probe` / :func:`probe_async` send one (``shipmail serve`` and
``GET /v1/status`` use them).

Process: ``shipmail serve`` runs the daemon in a process of its own (:func:`run_until_signalled`),
restarted when it dies or stops answering probes (:mod:`.supervisor`).

Exception tree::

    AuthDaemonError         the socket cannot be served (in use by a live daemon, bind failure)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import grp
import logging
import os
import secrets
import signal
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import argon2

logger = logging.getLogger("shipmail.mailserver.authd")

#: Largest request accepted, in bytes (the four fields with their length prefixes).
MAX_REQUEST_BYTES = 8 * 1024
#: How long one connection may take to send its request, in seconds.
DEFAULT_READ_TIMEOUT = 5.0

#: The ``service`` field of a health request (login and password empty).
HEALTH_SERVICE = "shipmail-health"
#: The address a health request looks up (``.invalid`` is reserved, RFC 2606: no mailbox has it).
HEALTH_ADDRESS = "health-probe@shipmail.invalid"
HEALTHY = "NO healthy"
UNHEALTHY = "NO unhealthy"


@dataclass(frozen=True)
class Credential:
    """One password that opens an account: its argon2id hash and, optionally, what to call after
    a login with it succeeded (in the checking worker thread; its errors are logged, not raised)."""

    password_hash: str
    used: Callable[[], None] | None = None


#: ``lookup(address)``: the argon2id hash of the account's one password, or its
#: :class:`Credential` list, or None for an unknown (or unusable) account.
Lookup = Callable[[str], "str | Sequence[Credential] | None"]


class AuthDaemonError(Exception):
    """The authentication socket cannot be served."""


class _BadRequest(Exception):
    """The request is malformed or too large (never carries request bytes)."""


def _recv_exact(conn: socket.socket, count: int) -> bytes:
    chunks: list[bytes] = []
    remaining = count
    while remaining:
        chunk = conn.recv(remaining)
        if not chunk:
            raise _BadRequest("connection closed mid-request")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_request(conn: socket.socket) -> tuple[bytes, bytes, bytes, bytes]:
    """Read ``(login, password, service, realm)``; raises :class:`_BadRequest` or OSError."""
    fields: list[bytes] = []
    total = 0
    for _ in range(4):
        (length,) = struct.unpack(">H", _recv_exact(conn, 2))
        total += 2 + length
        if total > MAX_REQUEST_BYTES:
            raise _BadRequest("request too large")
        fields.append(_recv_exact(conn, length))
    return fields[0], fields[1], fields[2], fields[3]


def encode_reply(text: str) -> bytes:
    """A reply frame: ``uint16`` big-endian length then the ASCII text."""
    data = text.encode("ascii", "replace")[:0xFFFF]
    return struct.pack(">H", len(data)) + data


def encode_request(login: str, password: str | bytes, service: str, realm: str) -> bytes:
    """A request frame as libsasl sends it (used by tests and diagnostics)."""
    out = b""
    for value in (login, password, service, realm):
        data = value.encode() if isinstance(value, str) else value
        out += struct.pack(">H", len(data)) + data
    return out


class AuthDaemon:
    """Serves the saslauthd protocol on a Unix stream socket from a background thread.

    ``lookup(address)`` maps a lower-case ``local@domain`` to its argon2id hash, or None; it is
    called from worker threads, so it must be thread-safe. ``hasher`` verifies (default: argon2-cffi
    defaults). At most ``max_workers`` checks run at once (argon2id takes ~64 MiB each); further
    connections wait in the queue. The socket gets mode ``0o660`` and group ``group`` (Cyrus runs
    as ``cyrus:mail``); with ``group=None`` it stays in the process's group.
    """

    def __init__(
        self,
        socket_path: Path,
        lookup: Lookup,
        *,
        hasher: argon2.PasswordHasher | None = None,
        max_workers: int | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        group: str | None = "mail",
        mode: int = 0o660,
    ) -> None:
        self.socket_path = Path(socket_path)
        self._lookup = lookup
        self._hasher = hasher or argon2.PasswordHasher()
        self._max_workers = max_workers or min(8, 2 * (os.cpu_count() or 1))
        self._read_timeout = read_timeout
        self._group = group
        self._mode = mode
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopping = threading.Event()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Bind the socket (removing a stale socket file) and start serving.

        Raises :class:`AuthDaemonError` if another process serves the socket or binding fails.
        """
        if self._thread is not None:
            return
        self._remove_stale_socket()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            self._set_permissions()
            listener.listen(64)
            listener.settimeout(0.2)
        except OSError as exc:
            listener.close()
            raise AuthDaemonError(f"cannot serve {self.socket_path}: {exc}") from exc
        self._dummy()
        self._listener = listener
        self._stopping.clear()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix="shipmail-authd"
        )
        self._thread = threading.Thread(target=self._serve, name="shipmail-authd-accept", daemon=True)
        self._thread.start()
        logger.info("authd serving %s", self.socket_path)

    def stop(self) -> None:
        """Stop accepting, finish the checks under way, close and remove the socket."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake_accept()
        self._thread.join()
        self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.socket_path.unlink(missing_ok=True)
        logger.info("authd stopped")

    def __enter__(self) -> AuthDaemon:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def lookup(self) -> Lookup:
        """The current lookup function; assign to swap it (takes effect for the next login)."""
        return self._lookup

    @lookup.setter
    def lookup(self, value: Lookup) -> None:
        self._lookup = value

    def _wake_accept(self) -> None:
        """Connect once so a blocked accept() returns now (else its 0.2 s timeout does)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as waker:
                waker.settimeout(0.2)
                waker.connect(str(self.socket_path))
        except OSError:
            pass

    def _remove_stale_socket(self) -> None:
        path = self.socket_path
        if not path.exists() and not path.is_symlink():
            return
        if not path.is_socket():
            raise AuthDaemonError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)  # nobody listens: stale
            return
        finally:
            probe.close()
        raise AuthDaemonError(f"{path} is served by another process")

    def _set_permissions(self) -> None:
        if self._group is not None:
            try:
                gid = grp.getgrnam(self._group).gr_gid
                os.chown(self.socket_path, -1, gid)
            except (KeyError, PermissionError) as exc:
                logger.warning("authd socket: cannot set group %s (%s)", self._group, type(exc).__name__)
        os.chmod(self.socket_path, self._mode)

    # ----------------------------------------------------------------- serving

    def _serve(self) -> None:
        assert self._listener is not None and self._pool is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stopping.is_set():
                    return
                logger.warning("authd accept failed: %s", exc)
                continue
            if self._stopping.is_set():
                conn.close()
                return
            try:
                self._pool.submit(self._handle, conn)
            except RuntimeError:  # pool shut down
                conn.close()
                return

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(self._read_timeout)
            try:
                request = read_request(conn)
            except _BadRequest as exc:
                logger.warning("authd: bad request (%s)", exc)
                self._send(conn, "NO bad request")
                return
            except OSError as exc:
                logger.warning("authd: reading request failed (%s)", type(exc).__name__)
                return
            login, password, service, _realm = request
            if service == HEALTH_SERVICE.encode() and not login and not password:
                verdict = self.health()
            else:
                verdict = self.check(*request)
            self._send(conn, verdict)

    def health(self) -> str:
        """The answer to a health request: :data:`HEALTHY` when the lookup answers (about
        :data:`HEALTH_ADDRESS`), :data:`UNHEALTHY` when it raises; never raises."""
        try:
            self._lookup(HEALTH_ADDRESS)
        except Exception as exc:
            logger.error("authd: health check: lookup failed: %s", type(exc).__name__)
            return UNHEALTHY
        return HEALTHY

    @staticmethod
    def _send(conn: socket.socket, text: str) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(encode_reply(text))

    def check(self, login: bytes, password: bytes, service: bytes, realm: bytes) -> str:
        """The reply (``OK`` or ``NO <reason>``) for one request; never raises."""
        try:
            login_text = login.decode("utf-8")
            realm_text = realm.decode("utf-8")
            service_text = service.decode("utf-8", "replace")
        except UnicodeDecodeError:
            return "NO bad encoding"
        if not realm_text or not login_text:
            logger.info("authd: refused login without a domain (service %s)", service_text)
            return "NO login must be local@domain"
        address = f"{login_text}@{realm_text}".lower()
        try:
            found = self._lookup(address)
        except Exception as exc:  # the lookup's failure must not stop the daemon
            logger.error("authd: lookup failed for %s: %s", address, type(exc).__name__)
            return "NO temporary failure"
        credentials = [Credential(found)] if isinstance(found, str) else list(found or ())
        if not credentials:
            self._verify(self._dummy(), password)  # same cost as a real check
            logger.info("authd: unknown address %s (service %s)", address, service_text)
            return "NO authentication failure"
        for index, credential in enumerate(credentials):
            if self._verify(credential.password_hash, password):
                logger.info("authd: OK %s (service %s, credential %d)", address, service_text, index)
                self._used(credential, address)
                return "OK"
        logger.info("authd: wrong password for %s (service %s)", address, service_text)
        return "NO authentication failure"

    @staticmethod
    def _used(credential: Credential, address: str) -> None:
        if credential.used is None:
            return
        try:
            credential.used()
        except Exception as exc:  # bookkeeping must not refuse a good login
            logger.error("authd: recording the use of a credential of %s failed: %s", address, type(exc).__name__)

    def _dummy(self) -> str:
        """A hash of a random secret, verified for unknown addresses (computed once)."""
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(secrets.token_bytes(16))
            return self._dummy_hash

    def _verify(self, password_hash: str, password: bytes) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            logger.error("authd: stored hash is not a valid argon2 hash")
            return False
        except Exception as exc:
            logger.error("authd: verify failed: %s", type(exc).__name__)
            return False


def _health_request() -> bytes:
    return encode_request("", "", HEALTH_SERVICE, "")


def _decode_reply(data: bytes) -> str | None:
    if len(data) < 2:
        return None
    (length,) = struct.unpack(">H", data[:2])
    body = data[2 : 2 + length]
    return body.decode("ascii", "replace") if len(body) == length else None


def probe(socket_path: Path, timeout: float = 1.0) -> bool:
    """Whether a login checker answers a health request on ``socket_path`` with :data:`HEALTHY`
    within ``timeout`` seconds (blocking); never raises."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(_health_request())
            data = b""
            while len(data) < 2 + len(HEALTHY):
                chunk = sock.recv(64)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return _decode_reply(data) == HEALTHY


async def probe_async(socket_path: Path, timeout: float = 1.0) -> bool:
    """:func:`probe` for an event loop (no thread); never raises."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(socket_path))
            try:
                writer.write(_health_request())
                await writer.drain()
                data = await reader.read(64)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    return _decode_reply(data) == HEALTHY


def run_until_signalled(daemon: AuthDaemon) -> None:
    """Serve ``daemon`` in this process until SIGTERM or SIGINT, then stop it (the login checker
    process of ``shipmail serve``). Raises :class:`AuthDaemonError` if it cannot start."""
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("authd: signal %d, stopping", signum)
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon.start()
        try:
            # A timed wait: the signal may land on another thread, which wakes no untimed wait.
            while not stopping.wait(0.5):
                pass
        finally:
            daemon.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
