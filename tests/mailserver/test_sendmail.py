"""The sendmail program Cyrus runs (``-bs``): SMTP on stdin/stdout, outbox files, relay."""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from shipmail.mailserver import sendmail

PROGRAM = Path(sendmail.__file__)
SYSTEM_PYTHON = "/usr/bin/python3"


def run_program(stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the program as Cyrus does: the system python, isolated, stdlib only."""
    python = SYSTEM_PYTHON if Path(SYSTEM_PYTHON).exists() else shutil.which("python3") or "python3"
    return subprocess.run(
        [python, "-I", "-S", str(PROGRAM), *args, "-bs"], input=stdin, capture_output=True, timeout=20, check=False
    )


def replies(output: bytes) -> list[str]:
    return [line for line in output.decode().split("\r\n") if line]


CONVERSATION = (
    b"EHLO cyrus\r\n"
    b"MAIL FROM:<sender@example.com> BODY=8BITMIME\r\n"
    b"RCPT TO:<one@example.org>\r\n"
    b"RCPT TO:<two@example.org>\r\n"
    b"DATA\r\n"
    b"From: sender@example.com\r\nSubject: hello\r\n\r\n"
    b"..a line starting with a dot\r\nbody \xc3\xa9\r\n.\r\n"
    b"RSET\r\nNOOP\r\nQUIT\r\n"
)


def test_outbox_conversation(tmp_path: Path) -> None:
    result = run_program(CONVERSATION, "--outbox", str(tmp_path))
    assert result.returncode == 0, result.stderr
    codes = [line[:3] for line in replies(result.stdout)]
    assert codes[0] == "220"
    assert codes[-1] == "221"
    assert "354" in codes
    assert codes.count("250") >= 7  # EHLO lines, MAIL, 2 RCPT, DATA end, RSET, NOOP
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".eml"
    content = files[0].read_bytes()
    assert content.startswith(
        b"X-Envelope-From: <sender@example.com>\r\nX-Envelope-To: <one@example.org>,\r\n <two@example.org>\r\n"
    )
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    assert parsed["X-Envelope-To"] == "<one@example.org>, <two@example.org>"
    assert b"\r\n.a line starting with a dot\r\n" in content
    assert content.endswith(b"body \xc3\xa9\r\n")


def test_helo_errors_and_eof(tmp_path: Path) -> None:
    conversation = (
        b"HELO x\r\nDATA\r\nRCPT TO:<a@b.c>\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\n"
        b"BOGUS\r\nRCPT TO:<a@b.c>\r\nDATA\r\nunterminated"
    )
    result = run_program(conversation, "--outbox", str(tmp_path))
    assert result.returncode == 0
    codes = [line[:3] for line in replies(result.stdout)]
    assert codes == ["220", "250", "503", "503", "250", "503", "502", "250", "354"]
    assert list(tmp_path.iterdir()) == []  # nothing stored from an interrupted DATA


def test_control_characters_in_paths_are_refused(tmp_path: Path) -> None:
    result = run_program(b"HELO x\r\nMAIL FROM:<a@b.c\rX-Evil: 1>\r\nQUIT\r\n", "--outbox", str(tmp_path))
    assert [line[:3] for line in replies(result.stdout)] == ["220", "250", "501", "221"]


def test_needs_outbox_or_relay() -> None:
    assert run_program(b"QUIT\r\n").returncode == 64


def test_relay(tmp_path: Path) -> None:
    """Relay through a local SMTP server (our own session class serving a socket)."""
    received = tmp_path / "received"
    received.mkdir()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as reader, conn.makefile("wb") as writer:
            sendmail.SmtpSession(reader, writer, outbox=received, relay=None).run()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        result = run_program(CONVERSATION, "--relay", f"127.0.0.1:{port}")
    finally:
        thread.join(10)
        server.close()
    assert result.returncode == 0, result.stderr
    assert "250 2.0.0 OK queued" in replies(result.stdout)
    (stored,) = list(received.iterdir())
    assert b"Subject: hello" in stored.read_bytes()


def test_relay_down_answers_451(tmp_path: Path) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    result = run_program(CONVERSATION, "--relay", f"127.0.0.1:{port}")
    assert any(line.startswith("451") for line in replies(result.stdout))
    assert b"Subject" not in result.stderr  # diagnostics never carry the message


@pytest.mark.parametrize(
    "relay,expected",
    [
        ("mx.example.com:25", ("mx.example.com", 25)),
        ("[::1]:2525", ("::1", 2525)),
    ],
)
def test_parse_relay(relay: str, expected: tuple[str, int]) -> None:
    assert sendmail.parse_relay(relay) == expected


@pytest.mark.parametrize("relay", ["mx.example.com", ":25", "host:0", "host:port"])
def test_parse_relay_rejects(relay: str) -> None:
    with pytest.raises(ValueError):
        sendmail.parse_relay(relay)
