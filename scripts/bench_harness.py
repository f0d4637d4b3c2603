"""Benchmark harness behind ``scripts/bench [options] [case ...]``.

One run starts a throwaway stack, runs the selected cases (default: all) against it and stops
everything:

* ``shipmail serve`` (the real command) on free ports in a ``mkdtemp`` data directory: the private
  Cyrus instance and the login checker (its own API port is not measured);
* the bench app (:mod:`bench_app`: the product app plus bench-only routes such as ``/bench/noop``)
  under uvicorn in its own process, same environment, one worker, no access log;
* fixtures: an API key (``shipmail keys create``), a verified domain and a mailbox.

Rate limits are raised out of the way (the limiter still runs on every authenticated request).

Cases live in ``scripts/bench_*.py`` modules (every one except this file and bench_app.py is
imported) and register themselves with ``@case("name", "what it measures")``; a case receives a
:class:`Bench` and prints its results. The load generator is a minimal HTTP/1.1 keep-alive client
on asyncio streams (``concurrency`` connections, one request in flight on each), far cheaper per
request than httpx, so that the server and not the client is what saturates.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
PYTHON = REPO / ".venv" / "bin" / "python"
SHIPMAIL = REPO / ".venv" / "bin" / "shipmail"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# --------------------------------------------------------------------------- case registry


@dataclass
class Case:
    name: str
    description: str
    run: Callable[[Bench], None]


CASES: dict[str, Case] = {}


def case(name: str, description: str) -> Callable[[Callable[[Bench], None]], Callable[[Bench], None]]:
    """Register ``fn(bench)`` as the benchmark case ``name``."""

    def register(fn: Callable[[Bench], None]) -> Callable[[Bench], None]:
        if name in CASES:
            raise ValueError(f"bench case {name!r} registered twice")
        CASES[name] = Case(name, description, fn)
        return fn

    return register


def discover() -> None:
    """Import every ``scripts/bench_*.py`` case module."""
    sys.path.insert(0, str(SCRIPTS))
    for path in sorted(SCRIPTS.glob("bench_*.py")):
        if path.stem not in ("bench_harness", "bench_app"):
            importlib.import_module(path.stem)


# --------------------------------------------------------------------------- processes


def free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in ports:
            ports.append(port)
    return ports


def http_json(method: str, url: str, key: str | None = None, body: object = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Stack:
    """The throwaway data directory, ``shipmail serve`` and the bench app; see the module doc."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="shipmail-bench-", dir="/tmp"))
        os.chmod(self.data_dir, 0o755)
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        serve_port, self.app_port, jmap, lmtp, imap = free_ports(5)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPMAIL_")}
        env.update(
            {
                "SHIPMAIL_DATA_DIR": str(self.data_dir),
                "SHIPMAIL_PORT": str(serve_port),
                "SHIPMAIL_JMAP_PORT": str(jmap),
                "SHIPMAIL_LMTP_PORT": str(lmtp),
                "SHIPMAIL_IMAP_PORT": str(imap),
                "SHIPMAIL_RATELIMIT_READ": "100000000/minute",
                "SHIPMAIL_RATELIMIT_WRITE": "100000000/minute",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env = env
        self.serve_url = f"http://127.0.0.1:{serve_port}"
        self.app_url = f"http://127.0.0.1:{self.app_port}"
        self.serve: subprocess.Popen[bytes] | None = None
        self.app: subprocess.Popen[bytes] | None = None
        self.key = ""
        self.mailbox_id = ""
        self.domain_id = ""
        self.address = ""  # the mailbox's address (bench@bench.example)
        self.jmap_port, self.lmtp_port = jmap, lmtp
        self.jmap_url = f"http://127.0.0.1:{jmap}/jmap/"  # Cyrus's JMAP session resource

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                argv,
                env=self.env,
                cwd=str(REPO),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_http(self, proc: subprocess.Popen[bytes], url: str, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode} while starting\n{self.output()}")
            with contextlib.suppress(OSError, ValueError):
                if http_json("GET", url)[0] == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{what} did not answer 200 on {url} within {timeout} s\n{self.output()}")

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [str(SHIPMAIL), *args], env=self.env, cwd=str(REPO), capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"shipmail {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def start(self) -> None:
        self.serve = self._spawn([str(SHIPMAIL), "serve"])
        self._wait_http(self.serve, self.serve_url + "/v1/status", "shipmail serve")
        self.app = self._spawn(
            [
                str(PYTHON),
                "-m",
                "uvicorn",
                "bench_app:create_bench_app",
                "--factory",
                "--app-dir",
                str(SCRIPTS),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.app_port),
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
                "--no-server-header",
            ]
        )
        self._wait_http(self.app, self.app_url + "/bench/noop", "bench app")
        self.key = self.cli("keys", "create", "--org", "bench", "--name", "bench").strip().splitlines()[-1]
        status, body = http_json("POST", self.app_url + "/v1/domains", self.key, {"name": "bench.example"})
        assert status == 201, body
        self.domain_id = body["id"]  # type: ignore[index]
        self.cli("domains", "verify", "bench.example")
        status, body = http_json(
            "POST",
            self.app_url + "/v1/mailboxes",
            self.key,
            {"domain_id": self.domain_id, "address": "bench", "password": "CorrectHorse9"},
        )
        assert status == 201, body
        self.mailbox_id = body["id"]  # type: ignore[index]
        self.address = body["address"]  # type: ignore[index]

    def instance_processes(self) -> list[int]:
        needle = str(self.data_dir).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if needle in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
        return found

    def stop(self) -> list[str]:
        """SIGTERM the bench app and serve, then kill whatever is left; returns notes on what
        needed killing."""
        notes: list[str] = []
        for name, proc in (("bench app", self.app), ("shipmail serve", self.serve)):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                notes.append(f"{name} ignored SIGTERM for 15 s: killed")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for attempt in range(3):
            left = self.instance_processes()
            if not left:
                break
            if attempt == 0:
                notes.append(f"{len(left)} Cyrus process(es) outlived shipmail serve's SIGTERM: killed")
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)
        return notes

    # ------------------------------------------------------------- straight to Cyrus (bench cases)

    def cyrus_bearer(self, address: str | None = None) -> str:
        """``Bearer <JWT>`` for ``address`` (default: the bench mailbox), signed with the instance's
        key exactly as the API signs its own (valid 1 h)."""
        from shipmail.mailserver.cyrus_config import CyrusLayout
        from shipmail.mailserver.cyrus_server import make_jwt

        text = CyrusLayout(self.data_dir / "cyrus").jwt_key_file.read_text()
        secret = base64.b64decode("".join(x for x in text.splitlines() if x and not x.startswith("-----")))
        return f"Bearer {make_jwt(secret, address or self.address)}"

    def cyrus_session(self, address: str | None = None) -> dict[str, object]:
        """Cyrus's JMAP session resource for ``address`` (URLs in it are relative to jmap_url)."""
        request = urllib.request.Request(self.jmap_url, headers={"Authorization": self.cyrus_bearer(address)})
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def deliver(self, messages: list[bytes], recipient: str | None = None, *, timeout: float = 120.0) -> None:
        """LMTP-deliver ``messages`` (CRLF line ends) to ``recipient`` (default: the bench mailbox),
        one transaction each on one connection, as an inbound MTA would."""
        import smtplib

        with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=timeout) as lmtp:
            for message in messages:
                refused = lmtp.sendmail("bench-sender@example.org", [recipient or self.address], message)
                if refused:
                    raise RuntimeError(f"LMTP refused: {refused}")

    def cyrus_cpu(self) -> float:
        """CPU seconds (utime + stime) of the live Cyrus processes of this instance."""
        total = 0.0
        for pid in self.instance_processes():
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += cpu_seconds(pid)
        return total

    def wait_cyrus_idle(self, timeout: float = 20.0, busy: float = 0.05, window: float = 0.5) -> float:
        """Wait until Cyrus (squatter indexing new mail, mostly) uses under ``busy`` of a core over
        ``window`` seconds, at most ``timeout`` seconds; returns the seconds waited."""
        began = time.monotonic()
        last = self.cyrus_cpu()
        while time.monotonic() - began < timeout:
            time.sleep(window)
            now = self.cyrus_cpu()
            if now - last < busy * window:
                break
            last = now
        return time.monotonic() - began

    def output(self, tail: int = 40) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        return "(no output)"


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    stack = Stack()
    try:
        stack.start()
        yield stack
    finally:
        for note in stack.stop():
            print(f"note: {note}")


# --------------------------------------------------------------------------- load generator

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


@dataclass
class Sample:
    """One timed round of requests on one path."""

    label: str
    requests: int
    errors: int
    seconds: float
    server_cpu: float
    client_cpu: float
    latencies: list[float] = field(repr=False)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.server_cpu / max(self.requests, 1)


async def _load(
    host: str, port: int, request: bytes, concurrency: int, seconds: float, latencies: list[float]
) -> tuple[int, int]:
    errors = 0
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, done
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                match = _CONTENT_LENGTH.search(head)
                if match is None:
                    raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
                await reader.readexactly(int(match.group(1)))
                latencies.append(time.perf_counter() - began)
                done += 1
                if head[9:12] != b"200":
                    errors += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, errors


class Bench:
    """What a case gets: the running stack and the load generator."""

    def __init__(self, stack: Stack, *, concurrency: int, seconds: float, rounds: int) -> None:
        self.stack = stack
        self.concurrency = concurrency
        self.seconds = seconds
        self.rounds = rounds

    def request_bytes(self, path: str, *, auth: bool = True) -> bytes:
        """A GET with the same headers whichever the path (the key is sent even where unused)."""
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{self.stack.app_port}", "Accept: application/json"]
        if auth:
            lines.append(f"Authorization: Bearer {self.stack.key}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def measure(self, label: str, path: str, seconds: float | None = None) -> Sample:
        """``concurrency`` keep-alive connections hammering ``GET path`` for ``seconds``."""
        seconds = self.seconds if seconds is None else seconds
        assert self.stack.app is not None
        latencies: list[float] = []
        cpu0, client0 = cpu_seconds(self.stack.app.pid), time.process_time()
        began = time.perf_counter()
        done, errors = asyncio.run(
            _load("127.0.0.1", self.stack.app_port, self.request_bytes(path), self.concurrency, seconds, latencies)
        )
        took = time.perf_counter() - began
        cpu, client = cpu_seconds(self.stack.app.pid) - cpu0, time.process_time() - client0
        return Sample(label, done, errors, took, cpu, client, latencies)

    def compare(self, paths: dict[str, str]) -> dict[str, list[Sample]]:
        """Alternate the paths for ``rounds`` rounds (after a short warm-up of each); per label the
        samples in order. Raises if any response was not 200."""
        for label, path in paths.items():
            warm = self.measure(label, path, seconds=min(1.0, self.seconds))
            if warm.errors:
                raise RuntimeError(f"{label}: {warm.errors} of {warm.requests} warm-up responses were not 200")
        samples: dict[str, list[Sample]] = {label: [] for label in paths}
        for n in range(self.rounds):
            order = list(paths.items()) if n % 2 == 0 else list(reversed(paths.items()))
            for label, path in order:
                sample = self.measure(label, path)
                if sample.errors:
                    raise RuntimeError(f"{label}: {sample.errors} of {sample.requests} responses were not 200")
                samples[label].append(sample)
        return samples


def summarize(samples: list[Sample]) -> dict[str, float]:
    """Totals over the rounds: req/s (all requests / all time), median round req/s, p50/p99 ms,
    server and client CPU per request (us) and the server's CPU use (share of one core)."""
    lat = sorted(x for s in samples for x in s.latencies)
    requests = sum(s.requests for s in samples)
    seconds = sum(s.seconds for s in samples)
    return {
        "rps": sum(s.requests for s in samples) / sum(s.seconds for s in samples),
        "median_rps": statistics.median(s.rps for s in samples),
        "min_rps": min(s.rps for s in samples),
        "max_rps": max(s.rps for s in samples),
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "cpu_us": 1e6 * sum(s.server_cpu for s in samples) / requests,
        "client_cpu_us": 1e6 * sum(s.client_cpu for s in samples) / requests,
        "server_busy": sum(s.server_cpu for s in samples) / seconds,
        "requests": requests,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    discover()
    parser = argparse.ArgumentParser(prog="scripts/bench", description="Run benchmark cases against a throwaway stack.")
    parser.add_argument("cases", nargs="*", help=f"cases to run (default: all): {', '.join(CASES)}")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--concurrency", type=int, default=16, help="connections in flight (default 16)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measured round (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per compared path (default 5)")
    args = parser.parse_args(argv)
    if args.list:
        for c in CASES.values():
            print(f"{c.name:20} {c.description}")
        return 0
    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    selected = [CASES[name] for name in (args.cases or CASES)]
    if os.geteuid() != 0:
        print("scripts/bench needs root (shipmail serve runs Cyrus)", file=sys.stderr)
        return 2
    began = time.monotonic()
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    with running_stack() as stack:
        print(f"load average before: {' '.join(load)}")
        print(
            f"stack up in {time.monotonic() - began:.1f} s: bench app {stack.app_url} (1 uvicorn worker), "
            f"{os.cpu_count()} CPUs, concurrency {args.concurrency}, {args.rounds} rounds x {args.seconds:g} s"
        )
        bench = Bench(stack, concurrency=args.concurrency, seconds=args.seconds, rounds=args.rounds)
        for c in selected:
            print(f"\n== {c.name}: {c.description}")
            c.run(bench)
    print(f"\nbench done in {time.monotonic() - began:.1f} s; everything stopped")
    return 0


if __name__ == "__main__":
    # Case modules import ``bench_harness``; run that module, not this __main__ copy of it, so that
    # they register into the registry main() reads.
    sys.path.insert(0, str(SCRIPTS))
    import bench_harness

    sys.exit(bench_harness.main())
