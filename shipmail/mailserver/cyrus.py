"""The private Cyrus IMAP 3.6 instance: prepare its directory, start it, stop it.

One :class:`CyrusInstance` owns one directory (layout in :mod:`.cyrus_config`). It needs root: the
files are chowned to ``cyrus:mail`` and Cyrus's ``master`` (started as root) drops to user
``cyrus``. The daemons come from Debian's packages (``scripts/install-cyrus``).

Typical use::

    instance = CyrusInstance(settings.cyrus_dir, jmap_port=18080, imap_port=18143,
                             authd_socket=None, outbox_dir=settings.spool_dir)
    instance.prepare()          # idempotent; makes our own 0700 parent dirs traversable
    instance.start()            # returns once JMAP, IMAP and LMTP answer
    instance.probe("imap")      # None while the service answers (see also .supervisor)
    ...
    instance.stop()             # leaves no process behind, orphans of a dead master included

Logins of mailbox users are checked by :class:`shipmail.mailserver.authd.AuthDaemon`, which the
caller runs on :attr:`CyrusInstance.authd_socket`. Cyrus logs through syslog(3) only (``/dev/log``);
``master.log`` captures only master's stdout/stderr.

Exception tree::

    CyrusError                 any failure preparing, starting or stopping the instance
     +-- CyrusNotInstalled     the Debian packages are missing: run scripts/install-cyrus
     +-- CyrusSetupError       the directory cannot be used (permissions, not root, no prepare())
     +-- CyrusStartError       master did not start or did not answer in time (log tail inside)
"""

from __future__ import annotations

import base64
import contextlib
import grp
import http.client
import logging
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from . import procs
from .cyrus_config import (
    CYRUS_BIN,
    SERVERNAME,
    CyrusLayout,
    render_cyrus_conf,
    render_imapd_conf,
)
from .syslog_capture import SyslogWindow

if TYPE_CHECKING:
    from shipmail.config import Settings

logger = logging.getLogger("shipmail.mailserver.cyrus")

#: Binaries the instance needs; :class:`CyrusNotInstalled` names the first one missing.
REQUIRED_PROGRAMS = (
    CYRUS_BIN / "master",
    CYRUS_BIN / "httpd",
    CYRUS_BIN / "imapd",
    CYRUS_BIN / "lmtpd",
    CYRUS_BIN / "squatter",
    CYRUS_BIN / "ctl_cyrusdb",
)
#: The interpreter that runs the sendmail program as user ``cyrus`` (not the service's venv).
SYSTEM_PYTHON = Path("/usr/bin/python3")
#: The Unix user and group the Cyrus daemons run as.
CYRUS_USER = "cyrus"
CYRUS_GROUP = "mail"
INSTALL_HINT = "run scripts/install-cyrus (as root) to install the Debian Cyrus packages"
_SENDMAIL_SOURCE = Path(__file__).with_name("sendmail.py")


class CyrusError(Exception):
    """Preparing, starting or stopping the Cyrus instance failed."""


class CyrusNotInstalled(CyrusError):
    """A Cyrus program (or the cyrus user) is missing."""


class CyrusSetupError(CyrusError):
    """The instance directory cannot be set up or used."""


class CyrusStartError(CyrusError):
    """master did not start, or its services did not answer before the timeout."""


def find_saslpasswd2() -> Path | None:
    """Path of ``saslpasswd2`` (package sasl2-bin), or None."""
    found = shutil.which("saslpasswd2") or shutil.which("saslpasswd2", path="/usr/sbin:/sbin")
    return Path(found) if found else None


def check_installed() -> None:
    """Raise :class:`CyrusNotInstalled` unless the daemons, saslpasswd2 and user cyrus exist."""
    for program in REQUIRED_PROGRAMS:
        if not os.access(program, os.X_OK):
            raise CyrusNotInstalled(f"{program} is missing: {INSTALL_HINT}")
    if find_saslpasswd2() is None:
        raise CyrusNotInstalled(f"saslpasswd2 is missing: {INSTALL_HINT}")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        raise CyrusNotInstalled(f"{SYSTEM_PYTHON} is missing (runs the sendmail program)")
    try:
        pwd.getpwnam(CYRUS_USER)
    except KeyError:
        raise CyrusNotInstalled(f"user {CYRUS_USER!r} does not exist: {INSTALL_HINT}") from None


def _user_ids(user: str) -> tuple[int, set[int]]:
    entry = pwd.getpwnam(user)
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    return entry.pw_uid, gids


def _may_enter(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def untraversable_parent(path: Path, user: str = CYRUS_USER) -> Path | None:
    """The first ancestor of ``path`` that ``user`` may not enter (no ``x`` bit), or None.

    Only existing ancestors are checked (POSIX mode bits; ACLs are ignored).
    """
    uid, gids = _user_ids(user)
    for parent in reversed(path.parents):
        try:
            st = parent.stat()
        except FileNotFoundError:
            return None
        if not _may_enter(st, uid, gids):
            return parent
    return None


def make_traversable(path: Path, user: str = CYRUS_USER, group: str = CYRUS_GROUP) -> list[str]:
    """Let ``user`` enter every existing directory on the way to ``path`` (its ancestors and
    ``path`` itself); returns one sentence per directory changed (empty: nothing to do).

    A directory this process owns gets the search (``x``) bit only, never read: for ``group``
    (after a ``chgrp`` to it) when its group had no rights at all, else for others. A directory in
    the way that this process does NOT own raises :class:`CyrusSetupError` naming it, before
    anything is changed. Mode bits only (ACLs are ignored).
    """
    uid, gids = _user_ids(user)
    me = os.geteuid()
    blocked: list[tuple[Path, os.stat_result]] = []
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            break
        if not _may_enter(st, uid, gids):
            if st.st_uid != me:
                owner = _owner_name(st.st_uid)
                raise CyrusSetupError(
                    f"user {user} cannot enter {directory} (needed to reach {path}; mode "
                    f"{stat.S_IMODE(st.st_mode):04o}, owner {owner}) and it is not ours to change: "
                    f"make it traversable (chmod o+x {directory}) or choose another directory"
                )
            blocked.append((directory, st))
    changes = []
    gid = grp.getgrnam(group).gr_gid
    for directory, st in blocked:
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o070 == 0 and gid in gids:
            os.chown(directory, -1, gid)
            os.chmod(directory, mode | stat.S_IXGRP)
            how = f"group {group}, mode {mode | stat.S_IXGRP:04o}: its members may enter it, not list it"
        else:
            os.chmod(directory, mode | stat.S_IXOTH)
            how = f"mode {mode | stat.S_IXOTH:04o}: others may enter it, not list it"
        changes.append(f"made {directory} traversable for user {user} ({how})")
    return changes


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _probe_host(host: str) -> str:
    """Where to connect to reach a service bound on ``host`` (wildcards mean loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host.strip("[]"))


def _greeting(host: str | Path, port: int | None, timeout: float, goodbye: bytes = b"") -> bytes:
    """The first line a TCP server (a Unix socket server when ``port`` is None and ``host`` is
    its path) sends, b"" if none; then ``goodbye`` is sent (a polite end of the session). Raises
    OSError if unreachable or silent for ``timeout`` seconds."""
    if port is None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(host))
        except OSError:
            sock.close()
            raise
    else:
        sock = socket.create_connection((str(host), port), timeout=timeout)
    with sock:
        sock.settimeout(timeout)
        line = sock.recv(512).split(b"\r\n", 1)[0]
        if goodbye and line:
            with contextlib.suppress(OSError):
                sock.sendall(goodbye)
        return line


def _http_status(host: str, port: int, path: str, timeout: float) -> int:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


class CyrusInstance:
    """One private Cyrus instance in ``directory`` (absolute, no whitespace or quotes).

    Ports are TCP ports: ``imap_port`` and ``jmap_port`` (HTTP, JMAP at ``/jmap/``) listen on
    ``host``. LMTP (``lmtpd -a`` trusts its clients) listens on the Unix socket
    :attr:`lmtp_socket`, where ``shipmail serve``'s inbound gateway hands mail over (the public
    ``SHIPMAIL_LMTP_PORT`` is the gateway's), and on ``lmtp_port`` of 127.0.0.1 only when given
    (tests and benchmarks that talk to Cyrus without the gateway). ``authd_socket``
    is where Cyrus asks about passwords (default ``<directory>/run/authd.sock``); its parent
    directories must be reachable by user cyrus. Mail Cyrus sends goes to ``smtp_relay``
    (``host:port``) when given, else as ``.eml`` files into ``outbox_dir``.
    ``failed_login_pause`` (seconds, Cyrus's ``failedloginpause``) delays the answer to a wrong
    IMAP/JMAP-Basic password; tests set 0.
    """

    admin_user = "admin"

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        jmap_port: int,
        lmtp_port: int | None = None,
        imap_port: int,
        authd_socket: Path | None = None,
        outbox_dir: Path,
        smtp_relay: str | None = None,
        failed_login_pause: int = 3,
    ) -> None:
        directory = Path(directory).absolute()
        for text in (str(directory), str(outbox_dir), str(authd_socket or "")):
            if any(ch.isspace() or ch in "\"'\\" for ch in text):
                raise CyrusSetupError(f"path must not contain whitespace or quotes: {text!r}")
        self.layout = CyrusLayout(directory)
        self.host = host
        self.jmap_port = jmap_port
        self.lmtp_port = lmtp_port
        self.imap_port = imap_port
        self.authd_socket = Path(authd_socket).absolute() if authd_socket else self.layout.default_authd_socket
        self.outbox_dir = Path(outbox_dir).absolute()
        self.smtp_relay = smtp_relay
        self.failed_login_pause = failed_login_pause

    @classmethod
    def from_settings(cls, settings: Settings, *, failed_login_pause: int = 3) -> CyrusInstance:
        """The instance :class:`~shipmail.config.Settings` describe (``cyrus_dir``, ports,
        ``mailserver_host``; default authd socket). Its LMTP is the Unix socket only:
        ``settings.lmtp_port`` belongs to the inbound gateway. Its ``sendmail`` program always
        writes into ``settings.spool_dir``: the service's outgoing queue takes every message from
        there and relays it (``smtp_relay``), delivers it locally or keeps it in the outbox
        (:mod:`shipmail.messages.outbound`), so there is one way out."""
        return cls(
            settings.cyrus_dir,
            host=settings.mailserver_host,
            jmap_port=settings.jmap_port,
            imap_port=settings.imap_port,
            outbox_dir=settings.spool_dir,
            failed_login_pause=failed_login_pause,
        )

    # ----------------------------------------------------------------- properties

    @property
    def directory(self) -> Path:
        """The instance directory (absolute)."""
        return self.layout.directory

    @property
    def imapd_conf(self) -> Path:
        """Path of the generated imapd.conf."""
        return self.layout.imapd_conf

    @property
    def log_file(self) -> Path:
        """master's stdout/stderr (``-L``); Cyrus's own messages go to syslog."""
        return self.layout.log_file

    @property
    def admin_password(self) -> str:
        """The admin's IMAP password, read from ``etc/admin.password``; needs :meth:`prepare`."""
        try:
            return self.layout.admin_password_file.read_text().strip()
        except FileNotFoundError:
            raise CyrusSetupError(f"no admin password in {self.directory}: call prepare()") from None

    @property
    def jwt_secret(self) -> bytes:
        """The raw HS256 secret Cyrus accepts Bearer JWTs signed with; needs :meth:`prepare`."""
        try:
            text = self.layout.jwt_key_file.read_text()
        except FileNotFoundError:
            raise CyrusSetupError(f"no JWT key in {self.directory}: call prepare()") from None
        body = "".join(line for line in text.splitlines() if line and not line.startswith("-----"))
        return base64.b64decode(body)

    @property
    def connect_host(self) -> str:
        """Where clients connect to reach IMAP and HTTP (a wildcard ``host`` means loopback)."""
        return _probe_host(self.host)

    @property
    def lmtp_socket(self) -> Path:
        """The Unix socket lmtpd serves on (see :attr:`CyrusLayout.lmtp_socket`)."""
        return self.layout.lmtp_socket

    @property
    def jmap_socket(self) -> Path | None:
        """The Unix socket httpd also serves JMAP on, or None when its path is too long for one
        (``sun_path`` holds 107 bytes). The service prefers it: no TCP delayed-ACK stalls."""
        path = self.layout.jmap_socket
        return path if len(os.fsencode(path)) <= 100 else None

    @property
    def jmap_session_url(self) -> str:
        """Absolute URL of the JMAP session resource."""
        host = self.connect_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.jmap_port}/jmap/"

    # ----------------------------------------------------------------- prepare

    def prepare(self) -> list[str]:
        """Create or refresh the instance directory; safe to call on every start.

        First makes the directories on the way to the instance, the outbox and the authd socket
        traversable for user cyrus where this process owns them (:func:`make_traversable`: a
        ``mktemp -d`` data dir is mode 0700); returns those changes, one sentence each (also
        logged). Then creates the sub-folders, (re)writes imapd.conf, cyrus.conf and the sendmail
        wrapper, keeps an existing admin password and JWT key (creating them the first time), sets
        the admin's sasldb entry, and chowns everything to cyrus:mail. Raises
        :class:`CyrusNotInstalled`, :class:`CyrusSetupError` (not root; a directory on the way
        that user cyrus cannot enter and that this process does not own; a failed saslpasswd2).
        """
        check_installed()
        if os.geteuid() != 0:
            raise CyrusSetupError("preparing the Cyrus instance needs root (chown to cyrus:mail)")
        changes: list[str] = []
        for path in (self.directory.parent, self.outbox_dir.parent, self.authd_socket.parent.parent):
            for change in make_traversable(path):
                logger.warning("%s", change)
                changes.append(change)
        layout = self.layout
        for directory in layout.directories():
            directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        self.outbox_dir.mkdir(mode=0o770, parents=True, exist_ok=True)
        self.authd_socket.parent.mkdir(mode=0o750, parents=True, exist_ok=True)

        password = self._ensure_admin_password()
        self._ensure_jwt_key()
        self._write(
            layout.imapd_conf,
            render_imapd_conf(
                layout,
                admin_user=self.admin_user,
                authd_socket=self.authd_socket,
                failed_login_pause=self.failed_login_pause,
            ),
            0o640,
        )
        self._write(
            layout.cyrus_conf,
            render_cyrus_conf(
                layout,
                host=self.host,
                imap_port=self.imap_port,
                jmap_port=self.jmap_port,
                lmtp_port=self.lmtp_port,
                jmap_socket=self.jmap_socket,
            ),
            0o640,
        )
        self._write_sendmail()
        self._set_admin_sasldb(password)
        self._chown_tree()
        logger.info("prepared Cyrus instance in %s", self.directory)
        return changes

    @staticmethod
    def _write(path: Path, text: str, mode: int) -> None:
        temporary = path.with_name(f".{path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)

    def _ensure_admin_password(self) -> str:
        path = self.layout.admin_password_file
        if path.exists():
            password = path.read_text().strip()
            if password:
                return password
        password = secrets.token_urlsafe(32)
        self._write(path, password + "\n", 0o600)
        return password

    def _ensure_jwt_key(self) -> None:
        path = self.layout.jwt_key_file
        if path.exists():
            return
        secret = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        self._write(path, f"-----BEGIN HMAC KEY-----\n{secret}\n-----END HMAC KEY-----\n", 0o600)

    def _write_sendmail(self) -> None:
        layout = self.layout
        shutil.copyfile(_SENDMAIL_SOURCE, layout.sendmail_program)
        os.chmod(layout.sendmail_program, 0o750)
        target = (
            f"--relay {shlex.quote(self.smtp_relay)}"
            if self.smtp_relay
            else f"--outbox {shlex.quote(str(self.outbox_dir))}"
        )
        wrapper = (
            "#!/bin/sh\n"
            "# Generated by shipmail: Cyrus runs this as `sendmail -bs` (user cyrus).\n"
            f"exec {SYSTEM_PYTHON} -I -S {shlex.quote(str(layout.sendmail_program))} "
            f'{target} "$@"\n'
        )
        self._write(layout.sendmail_wrapper, wrapper, 0o750)

    def _set_admin_sasldb(self, password: str) -> None:
        program = find_saslpasswd2()
        assert program is not None  # check_installed() ran
        result = subprocess.run(
            [str(program), "-f", str(self.layout.sasldb), "-u", SERVERNAME, "-p", "-c", self.admin_user],
            input=password.encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            # saslpasswd2 never echoes the password; its stderr is safe to show.
            raise CyrusSetupError(f"saslpasswd2 failed ({result.returncode}): {result.stderr.decode(errors='replace')}")

    def _chown_tree(self) -> None:
        uid = pwd.getpwnam(CYRUS_USER).pw_uid
        gid = grp.getgrnam(CYRUS_GROUP).gr_gid

        def own(path: str) -> None:
            st = os.lstat(path)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.lchown(path, uid, gid)

        for root, dirs, files in os.walk(self.directory):
            own(root)
            for name in dirs + files:
                path = os.path.join(root, name)
                if self.authd_socket != Path(path):  # the AuthDaemon owns its socket
                    own(path)
        own(str(self.outbox_dir))

    # ----------------------------------------------------------------- processes

    def _is_ours(self, argv: list[str]) -> bool:
        """Whether ``argv`` belongs to this instance: a Cyrus program run with our imapd.conf,
        or our sendmail wrapper/program."""
        conf = str(self.layout.imapd_conf)
        bin_prefix = str(self.layout.bin) + "/"
        return conf in argv or any(arg.startswith(bin_prefix) for arg in argv)

    def is_master(self, argv: list[str]) -> bool:
        """Whether ``argv`` is this instance's master (``master -C <our imapd.conf> ...``)."""
        return bool(argv) and argv[0].endswith("master") and str(self.layout.imapd_conf) in argv

    def processes(self) -> list[int]:
        """Pids of every live process of this instance (master, its children, sendmail runs)."""
        return procs.find(self._is_ours)

    def master_pid(self) -> int | None:
        """The pid of this instance's running master, or None."""
        pids = procs.find(self.is_master)
        return pids[0] if pids else None

    def is_running(self) -> bool:
        """Whether this instance's master is running."""
        return self.master_pid() is not None

    # ----------------------------------------------------------------- start / stop

    def start(self, timeout: float = 30.0, *, capture_syslog: bool = True) -> None:
        """Start master and wait until JMAP answers 401 on GET /jmap/ and IMAP and LMTP greet.

        No-op when already running. Raises :class:`CyrusSetupError` before :meth:`prepare`,
        :class:`CyrusStartError` if a port is taken, master exits, or the services do not answer
        within ``timeout`` seconds; then nothing is left running. The error carries the tail of
        ``master.log`` and, with ``capture_syslog`` and no syslog daemon on ``/dev/log``, the
        syslog lines Cyrus sent while starting (see :mod:`.syslog_capture`).
        """
        check_installed()
        if self.is_running():
            return
        layout = self.layout
        if not layout.imapd_conf.exists() or not layout.cyrus_conf.exists():
            raise CyrusSetupError(f"{self.directory} is not prepared: call prepare() first")
        if len(os.fsencode(layout.lmtp_socket)) > 100:  # sun_path holds 107 bytes
            raise CyrusSetupError(f"the instance path is too long for its LMTP socket: {layout.lmtp_socket}")
        self._remove_stale_state()
        self._check_ports_free()
        log_offset = layout.log_file.stat().st_size if layout.log_file.exists() else 0
        window = SyslogWindow() if capture_syslog else None
        with window or contextlib.nullcontext():
            try:
                self._launch(timeout)
            except CyrusStartError as exc:
                self.stop()
                time.sleep(0.05)  # let the last syslog lines arrive
                raise CyrusStartError(f"{exc}\n{self._log_tail(log_offset)}{self._syslog_tail(window)}") from None
        logger.info("Cyrus is up (imap %s, jmap %s, lmtp %s)", self.imap_port, self.jmap_port, self.lmtp_socket)

    def _launch(self, timeout: float) -> None:
        layout = self.layout
        command = [
            str(CYRUS_BIN / "master"),
            "-C",
            str(layout.imapd_conf),
            "-M",
            str(layout.cyrus_conf),
            "-p",
            str(layout.pid_file),
            "-d",
            "-L",
            str(layout.log_file),
        ]
        logger.info("starting Cyrus master for %s", self.directory)
        deadline = time.monotonic() + timeout
        try:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise CyrusStartError(f"master did not daemonise within {timeout} s") from None
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            raise CyrusStartError(f"master exited with status {result.returncode} {output}")
        self._wait_ready(deadline)

    @staticmethod
    def _syslog_tail(window: SyslogWindow | None, lines: int = 20) -> str:
        if window is None or not window.active:
            return ""
        caught = window.lines()[-lines:]
        if not caught:
            return "\n(no syslog lines from Cyrus)"
        return "\nsyslog lines while starting:\n" + "\n".join(caught)

    def _check_ports_free(self) -> None:
        """Raise :class:`CyrusStartError` if a port is taken (master would only log it)."""
        for name, host, port in (
            ("imap", self.host, self.imap_port),
            ("jmap", self.host, self.jmap_port),
            ("lmtp", "127.0.0.1", self.lmtp_port),
        ):
            if port is None:
                continue
            bind_host = host.strip("[]")
            family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((bind_host, port))
                except OSError as exc:
                    raise CyrusStartError(
                        f"cannot start Cyrus: {name} port {host}:{port} is not free ({exc})"
                    ) from None

    def _remove_stale_state(self) -> None:
        """Remove what a dead master leaves: its pid file and ``lib/proc`` entries."""
        self.layout.pid_file.unlink(missing_ok=True)
        proc_dir = self.layout.configdirectory / "proc"
        if proc_dir.is_dir():
            for entry in proc_dir.iterdir():
                if entry.is_file():
                    entry.unlink(missing_ok=True)

    def probe(self, name: str, timeout: float = 1.0) -> str | None:
        """None when service ``name`` (``jmap``: ``GET /jmap/`` answers 401; ``imap``: greets
        ``* OK``; ``lmtp``: greets ``220`` on :attr:`lmtp_socket`) answers within ``timeout`` seconds, else what went
        wrong. Blocking; never raises."""
        host = self.connect_host
        try:
            if name == "jmap":
                status = _http_status(host, self.jmap_port, "/jmap/", timeout)
                return None if status == 401 else f"jmap: GET /jmap/ answered {status}, expected 401"
            if name == "imap":
                line = _greeting(host, self.imap_port, timeout, b"a LOGOUT\r\n")
                return None if line.startswith(b"* OK") else f"imap: greeted {line[:80]!r}"
            line = _greeting(self.lmtp_socket, None, timeout, b"QUIT\r\n")
            return None if line.startswith(b"220") else f"lmtp: greeted {line[:80]!r}"
        except (OSError, http.client.HTTPException) as exc:
            return f"{name}: {str(exc) or type(exc).__name__}"

    def _wait_ready(self, deadline: float) -> None:
        pending = ["jmap", "imap", "lmtp"]
        last_error = "no answer yet"
        while True:
            for name in list(pending):
                problem = self.probe(name)
                if problem is None:
                    pending.remove(name)
                else:
                    last_error = problem
            if not pending:
                return
            if not self.is_running():
                raise CyrusStartError(f"Cyrus master exited during start-up ({last_error})")
            if time.monotonic() >= deadline:
                raise CyrusStartError(f"Cyrus did not answer in time: waiting for {pending} ({last_error})")
            time.sleep(0.05)

    def _log_tail(self, offset: int, lines: int = 30) -> str:
        try:
            with self.layout.log_file.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
        except OSError:
            text = ""
        tail = "\n".join(text.splitlines()[-lines:])
        if not tail:
            return f"({self.layout.log_file} is empty; Cyrus itself logs through syslog)"
        return f"last lines of {self.layout.log_file}:\n{tail}"

    def stop(self, timeout: float = 10.0, orphan_timeout: float = 3.0) -> None:
        """End every process of this instance; no-op when nothing runs.

        Every process first gets SIGCONT (a stopped process cannot act on SIGTERM). A live master
        gets SIGTERM and its children follow within 1-2 s; whatever is left after ``timeout``
        seconds is killed (SIGKILL). Orphans of a dead master (its httpd children go on serving
        JMAP, and hold the listening sockets) get SIGTERM and, after ``orphan_timeout`` seconds,
        SIGKILL. Removes the pid file. Raises :class:`CyrusError` if a process survives SIGKILL.
        """
        master = self.master_pid()
        pids = self.processes()
        procs.signal_all(pids, signal.SIGCONT, self._is_ours)
        if master is not None:
            logger.info("stopping Cyrus master %s for %s", master, self.directory)
            procs.signal_all([master], signal.SIGTERM, self.is_master)
            left = procs.wait_gone(pids, timeout)
        else:
            left = pids
        left = sorted(set(left) | set(self.processes()))
        if left and master is None:
            logger.warning("ending the orphaned Cyrus processes %s (their master is gone)", left)
            procs.signal_all(left, signal.SIGTERM, self._is_ours)
            left = sorted(set(procs.wait_gone(left, orphan_timeout)) | set(self.processes()))
        if left:
            logger.warning("killing leftover Cyrus processes %s", left)
            procs.signal_all(left, signal.SIGKILL, self._is_ours)
            left = procs.wait_gone(left, 5.0)
            if left:
                raise CyrusError(f"Cyrus processes {left} did not end")
        self.layout.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> CyrusInstance:
        self.prepare()
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
