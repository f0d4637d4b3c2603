"""Run the real ``shipmail serve`` command as a subprocess, for end-to-end tests.

:class:`ServeProcess` owns one fresh data directory (``mkdtemp`` under /tmp, mode 0700 as
``mktemp -d`` gives: ``serve`` makes it traversable for user cyrus) and four free ports.
``start()`` launches ``.venv/bin/shipmail serve`` in a new session (its own process group) and
waits for ``GET /v1/status`` to answer 200; ``stop()`` sends SIGTERM to the command and waits for
it; ``cli()`` runs another ``shipmail`` command with the same environment. The processes ``serve``
supervises are found with :meth:`ServeProcess.api_pid`, :meth:`login_checker_pid`,
:meth:`cyrus_master_pid` and :meth:`cyrus_children`. ``close()`` (always call it, e.g. from a
fixture's teardown) kills whatever is left: the command, every process descended from it (each in
its own process group), the daemonised Cyrus master and its children (found by the data
directory in their command lines); then it removes the directory.

Used by test_serve.py and test_sdk.py; scripts/bench has its own copy of the few lines it needs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.integration.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
SHIPMAIL = REPO / ".venv" / "bin" / "shipmail"
CORPUS = REPO.parent / "shared" / "corpus" / "mail-fixtures"


def distinct_free_ports(n: int) -> list[int]:
    """``n`` different ports free on 127.0.0.1 right now."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listening socket could bind ``host:port`` now (SO_REUSEADDR, as servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _argv(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[:1]
    except OSError:
        return None
    if not raw or state[:1] in (["Z"], ["X"]):
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def _processes() -> dict[int, list[str]]:
    """Every live process (other than this one): pid -> argv."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            argv = _argv(int(entry.name))
            if argv:
                found[int(entry.name)] = argv
    return found


def _stat_fields(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _ppid(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[1]) if len(fields) > 1 else 0


def _pgid(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[2]) if len(fields) > 2 else 0


class ServeProcess:
    """One ``shipmail serve`` data directory; the command can be started and stopped repeatedly."""

    def __init__(
        self, prefix: str = "shipmail-serve-", extra_env: dict[str, str] | None = None, workers: int = 1
    ) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.workers = workers
        self.port, self.jmap_port, self.lmtp_port, self.imap_port = distinct_free_ports(4)
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self.proc: subprocess.Popen[bytes] | None = None
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPMAIL_")}
        env.update(
            {
                "SHIPMAIL_DATA_DIR": str(self.data_dir),
                "SHIPMAIL_PORT": str(self.port),
                "SHIPMAIL_JMAP_PORT": str(self.jmap_port),
                "SHIPMAIL_LMTP_PORT": str(self.lmtp_port),
                "SHIPMAIL_IMAP_PORT": str(self.imap_port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra_env or {})
        self.env = env

    # ----------------------------------------------------------------- addresses

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ports(self) -> dict[str, int]:
        return {"api": self.port, "jmap": self.jmap_port, "lmtp": self.lmtp_port, "imap": self.imap_port}

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 90.0) -> None:
        """Run ``shipmail serve`` and wait until ``GET /v1/status`` answers 200 (within 4-8 s on
        an idle machine; the bound is generous because the machine is shared)."""
        assert self.proc is None or self.proc.poll() is not None, "serve is already running"
        with self.log_path.open("ab") as log:
            log.write(f"\n===== shipmail serve ({time.strftime('%H:%M:%S')}) =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(SHIPMAIL), "serve", "--workers", str(self.workers)],
                env=self.env,
                cwd=str(REPO),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"shipmail serve exited with {self.proc.returncode} while starting\n{self.output()}"
                    )
                try:
                    r = http.get(f"{self.base_url}/v1/status")
                    if r.status_code == 200:
                        return
                    last = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.1)
        raise AssertionError(f"GET /v1/status not 200 within {timeout} s ({last})\n{self.output()}")

    def stop(self, timeout: float = 15.0) -> tuple[int | None, float]:
        """SIGTERM the command (only it, as a service manager would) and wait up to ``timeout``.

        Returns (exit status or None if it did not exit, seconds taken).
        """
        assert self.proc is not None
        began = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - began

    def instance_processes(self) -> list[tuple[int, str]]:
        """Live processes (other than this one) whose command line mentions the data directory."""
        needle = str(self.data_dir)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            argv = _argv(int(entry.name))
            if argv and any(needle in arg for arg in argv):
                found.append((int(entry.name), " ".join(argv)))
        return found

    def status(self, timeout: float = 10.0) -> tuple[int, dict[str, str]]:
        """``GET /v1/status``: (HTTP status, component -> "up"/"down"); (0, {}) when the API does
        not answer at all."""
        try:
            r = httpx.get(f"{self.base_url}/v1/status", timeout=timeout)
        except httpx.HTTPError:
            return 0, {}
        body = r.json()
        return r.status_code, {name: part["status"] for name, part in body.get("components", {}).items()}

    def wait_status(self, code: int, within: float) -> dict[str, str]:
        """Poll ``GET /v1/status`` until it answers ``code``; its components. Fails after ``within``
        seconds with the last answer and the command's output."""
        deadline = time.monotonic() + within
        while True:
            got, parts = self.status(timeout=max(0.5, deadline - time.monotonic()))
            if got == code:
                return parts
            if time.monotonic() >= deadline:
                raise AssertionError(f"/v1/status not {code} within {within} s: {got} {parts}\n{self.output(60)}")
            time.sleep(0.05)

    # ----------------------------------------------------------------- the supervised processes

    def children(self) -> dict[int, list[str]]:
        """The live direct children of the command: pid -> argv."""
        if self.proc is None:
            return {}
        return {pid: argv for pid, argv in _processes().items() if _ppid(pid) == self.proc.pid}

    def _child(self, subcommand: str) -> int | None:
        found = [pid for pid, argv in self.children().items() if subcommand in argv]
        assert len(found) <= 1, f"several {subcommand} processes: {found}"
        return found[0] if found else None

    def api_pid(self) -> int | None:
        """The API process (the uvicorn server, or uvicorn's supervisor with several workers)."""
        return self._child("serve-api")

    def api_workers(self) -> list[int]:
        """With several workers: uvicorn's worker processes (children of :meth:`api_pid`)."""
        parent = self.api_pid()
        return [] if parent is None else [pid for pid in _processes() if _ppid(pid) == parent]

    def login_checker_pid(self) -> int | None:
        return self._child("serve-login-checker")

    def cyrus_master_pid(self) -> int | None:
        conf = str(self.data_dir / "cyrus" / "etc" / "imapd.conf")
        found = [pid for pid, argv in _processes().items() if argv[0].endswith("/master") and conf in argv]
        return found[0] if found else None

    def cyrus_children(self, program: str) -> list[int]:
        """Pids of the instance's ``program`` processes (``httpd``, ``imapd``, ``lmtpd``...)."""
        conf = str(self.data_dir / "cyrus" / "etc" / "imapd.conf")
        return sorted(pid for pid, argv in _processes().items() if argv[0].endswith("/" + program) and conf in argv)

    def descendants(self) -> list[int]:
        """Every live process below the command (children, grandchildren...)."""
        if self.proc is None:
            return []
        parents = {pid: _ppid(pid) for pid in _processes()}
        found: list[int] = []
        frontier = {self.proc.pid}
        while frontier:
            below = {pid for pid, parent in parents.items() if parent in frontier and pid not in found}
            found.extend(sorted(below))
            frontier = below
        return found

    def kill(self) -> None:
        """End everything this object started: the command's process group and the process groups
        of its descendants (the API and the login checker have their own), then any process of
        its Cyrus instance (master daemonises into its own session), each by pid."""
        if self.proc is not None:
            groups = {self.proc.pid} | {_pgid(pid) for pid in self.descendants()}
            for group in groups:
                if group > 1:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(group, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        for _ in range(3):
            left = self.instance_processes()
            if not left:
                return
            for pid, _cmd in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)

    def output(self, tail: int = 200) -> str:
        """The last ``tail`` lines the command printed (all runs)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no output)"
        return "----- shipmail serve output -----\n" + "\n".join(lines[-tail:])

    # ----------------------------------------------------------------- the operator CLI

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``shipmail ARGS`` with the same environment."""
        result = subprocess.run(
            [str(SHIPMAIL), *args],
            env=self.env,
            cwd=str(REPO),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"shipmail {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def create_key(self, org: str = "acme", *scopes: str) -> str:
        """``shipmail keys create``; the key is the last line of stdout."""
        args = ["keys", "create", "--org", org, "--name", "e2e"]
        for scope in scopes:
            args += ["--scope", scope]
        key = self.cli(*args).stdout.strip().splitlines()[-1]
        assert key.startswith("sm_live_"), key
        return key

    def verify_domain(self, name: str) -> None:
        out = self.cli("domains", "verify", name).stdout
        assert "is verified" in out, out


@contextlib.contextmanager
def serve_running(
    prefix: str = "shipmail-serve-", extra_env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[ServeProcess]:
    """A started :class:`ServeProcess`; everything is killed and removed afterwards. The command's
    output is printed at teardown (pytest shows it when the test fails)."""
    serve = ServeProcess(prefix, extra_env, workers)
    try:
        serve.start()
        yield serve
    finally:
        print(serve.output())
        serve.close()
