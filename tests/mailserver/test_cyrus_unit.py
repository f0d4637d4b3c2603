"""Cyrus pieces that need no running Cyrus: configuration text, names, JWTs, directory checks."""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from shipmail.mailserver import cyrus, cyrus_admin
from shipmail.mailserver.cyrus import CyrusInstance, CyrusSetupError, make_traversable, untraversable_parent
from shipmail.mailserver.cyrus_config import CyrusLayout, render_cyrus_conf, render_imapd_conf
from shipmail.mailserver.cyrus_server import CyrusMailServer, make_jwt
from shipmail.mailserver.syslog_capture import SyslogWindow


def _options(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_imapd_conf_has_the_options_that_matter() -> None:
    layout = CyrusLayout(Path("/srv/shipmail/cyrus"))
    options = _options(
        render_imapd_conf(layout, admin_user="admin", authd_socket=Path("/srv/a.sock"), failed_login_pause=0)
    )
    expected = {
        "virtdomains": "userid",
        "unixhierarchysep": "yes",
        "altnamespace": "yes",
        "conversations": "yes",
        "jmap_nonstandard_extensions": "yes",
        "autocreate_post": "no",
        "delete_mode": "immediate",
        "search_engine": "xapian",
        "httpallowcompress": "no",
        "sasl_pwcheck_method": "auxprop saslauthd",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_saslauthd_path": "/srv/a.sock",
        "allowplaintext": "yes",
        "admins": "admin",
        "servername": "localhost",
        "sendmail": "/srv/shipmail/cyrus/bin/sendmail",
        "http_jwt_key_dir": "/srv/shipmail/cyrus/etc/jwt",
        "t1searchpartition-default": "/srv/shipmail/cyrus/search",
        "sync_log_channels": "squatter",
        "failedloginpause": "0",
    }
    assert {key: options.get(key) for key in expected} == expected
    assert "sasl_auto_transition" not in options


def test_cyrus_conf_binds_lmtp_to_loopback_and_passes_config() -> None:
    layout = CyrusLayout(Path("/srv/c"))
    text = render_cyrus_conf(layout, host="0.0.0.0", imap_port=1143, jmap_port=1080, lmtp_port=1024)
    # LMTP on its Unix socket (the inbound gateway's way in), and on loopback TCP when asked.
    lmtp = next(line for line in text.splitlines() if line.strip().startswith("lmtp "))
    assert f'listen="{layout.lmtp_socket}"' in lmtp and " -a" in lmtp
    tcp = next(line for line in text.splitlines() if line.strip().startswith("lmtptcp "))
    assert 'listen="127.0.0.1:1024"' in tcp and " -a" in tcp
    plain = render_cyrus_conf(layout, host="0.0.0.0", imap_port=1143, jmap_port=1080)
    assert "lmtptcp" not in plain and "1024" not in plain
    assert 'listen="0.0.0.0:1143"' in text and 'listen="0.0.0.0:1080"' in text
    commands = [line for line in text.splitlines() if "cmd=" in line]
    assert commands and all("-C /srv/c/etc/imapd.conf" in line for line in commands)
    assert "squatter -C /srv/c/etc/imapd.conf -R -d" in text


def test_missing_packages_name_the_install_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cyrus, "REQUIRED_PROGRAMS", (Path("/nonexistent/cyrus/bin/master"),))
    with pytest.raises(cyrus.CyrusNotInstalled, match="scripts/install-cyrus"):
        cyrus.check_installed()


@pytest.mark.parametrize(
    "address,name",
    [
        ("first.last@example.com", "user/first.last@example.com"),
        ("a_b-c=d@sub.example.co.uk", "user/a_b-c=d@sub.example.co.uk"),
    ],
)
def test_mailbox_names(address: str, name: str) -> None:
    assert cyrus_admin.mailbox_name(address) == name
    local, domain = address.split("@")
    assert cyrus_admin.mailbox_name(address, "Sent") == f"user/{local}/Sent@{domain}"


@pytest.mark.parametrize(
    "address",
    [
        "admin",
        "admin@localhost",
        "a/b@example.com",
        "a%@example.com",
        "a*@example.com",
        'a"b@example.com',
        "a+tag@example.com",
        "Upper@example.com",
        "a@example",
        ".a@example.com",
        "a..b@example.com",
        "a b@example.com",
        "a^b@example.com",
        "é@example.com",
        "@example.com",
    ],
)
def test_unusable_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError):
        cyrus_admin.split_address(address)


def test_jwt_has_exactly_sub_and_iat() -> None:
    secret = os.urandom(32)
    token = make_jwt(secret, "a@example.com", now=1_700_000_000.7)
    header_b64, payload_b64, _ = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
    payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert payload == {"sub": "a@example.com", "iat": 1_700_000_000 - 1}  # backdated: see make_jwt
    assert jwt.decode(token, OctKey.import_key(secret)).claims == payload


async def test_jmap_access_shape() -> None:
    server = CyrusMailServer(
        host="127.0.0.1",
        imap_port=1,
        jmap_port=18080,
        admin_user="admin",
        admin_password="x",
        jwt_secret=os.urandom(32),
    )
    try:
        access = server.jmap_access("a@example.com")
        assert access.session_url == "http://127.0.0.1:18080/jmap/"
        assert access.account_id == "a@example.com"
        assert access.authorization.startswith("Bearer ")
        claims = json.loads(base64.urlsafe_b64decode(access.authorization.split()[1].split(".")[1] + "=="))
        assert abs(claims["iat"] - time.time()) < 5
        assert server.sieve_capability == "https://cyrusimap.org/ns/jmap/sieve"
    finally:
        await server.aclose()


async def test_address_problem_names_what_cyrus_cannot_hold() -> None:
    """The names Cyrus reserves and the addresses too long for its logins (measured against the
    real server in tests/integration/test_hostile_cyrus.py); everything else is fine."""
    server = CyrusMailServer(
        host="127.0.0.1", imap_port=1, jmap_port=18080, admin_user="admin", admin_password="x", jwt_secret=b"k" * 32
    )
    try:
        for local in ("anyone", "anybody", "anonymous", "ANYONE"):
            problem = server.address_problem(f"{local}@example.com")
            assert problem is not None and "reserved" in problem
        for fine in ("admin", "cyrus", "anyone.x", "anonymous1", "postmaster", "user", "shared"):
            assert server.address_problem(f"{fine}@example.com") is None, fine
        longest = "l" * 64 + "@" + "d" * 7 + ".example"
        assert len(longest) == 80 and server.address_problem(longest) is None
        problem = server.address_problem("l" + longest)
        assert problem is not None and "80" in problem
        assert server.address_problem("a^b@example.com") is not None
    finally:
        await server.aclose()


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A 0700 directory, like pytest's tmp_path base: user cyrus cannot enter it."""
    directory = Path(tempfile.mkdtemp(prefix="shipmail-private-", dir="/tmp"))
    os.chmod(directory, 0o700)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_untraversable_parent_is_found(private_dir: Path) -> None:
    assert untraversable_parent(private_dir / "cyrus") == private_dir
    os.chmod(private_dir, 0o755)
    assert untraversable_parent(private_dir / "cyrus") is None


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, directories of another user)")
needs_cyrus = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/lib/cyrus/bin/master").exists(), reason="needs root and the Cyrus packages"
)


@needs_root
def test_make_traversable_opens_our_private_directories_to_group_mail(private_dir: Path) -> None:
    inner = private_dir / "data"
    inner.mkdir(mode=0o700)
    os.chmod(inner, 0o700)
    changes = make_traversable(inner / "cyrus")
    assert [c.split(" traversable")[0] for c in changes] == [f"made {private_dir}", f"made {inner}"]
    for directory in (private_dir, inner):
        st = directory.stat()
        assert (stat.S_IMODE(st.st_mode), grp.getgrgid(st.st_gid).gr_name) == (0o710, "mail")
    assert untraversable_parent(inner / "cyrus" / "x") is None
    assert make_traversable(inner / "cyrus") == []  # nothing left to do


@needs_root
def test_make_traversable_adds_only_o_x_when_the_group_has_rights(private_dir: Path) -> None:
    os.chmod(private_dir, 0o750)  # group root may read it: keep that group, open search to others
    (change,) = make_traversable(private_dir / "cyrus")
    assert "others may enter it, not list it" in change
    st = private_dir.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o751, 0)


@needs_root
def test_make_traversable_refuses_a_directory_of_another_user(private_dir: Path) -> None:
    theirs = private_dir / "theirs"
    theirs.mkdir()
    os.chown(theirs, pwd.getpwnam("nobody").pw_uid, -1)
    os.chmod(theirs, 0o700)
    with pytest.raises(CyrusSetupError) as refused:
        make_traversable(theirs / "data" / "cyrus")
    message = str(refused.value)
    assert f"cannot enter {theirs} " in message and "owner nobody" in message and "not ours" in message
    # Nothing was changed, not even our own directory above it.
    assert stat.S_IMODE(private_dir.stat().st_mode) == 0o700


@needs_cyrus
def test_prepare_makes_a_mktemp_data_dir_usable(private_dir: Path) -> None:
    instance = CyrusInstance(
        private_dir / "cyrus", jmap_port=1, lmtp_port=2, imap_port=3, outbox_dir=private_dir / "outbox"
    )
    changes = instance.prepare()
    assert len(changes) == 1 and changes[0].startswith(f"made {private_dir} traversable for user cyrus")
    assert untraversable_parent(instance.directory / "etc") is None
    assert instance.prepare() == []


@needs_cyrus
def test_prepare_refuses_when_a_directory_of_another_user_is_in_the_way(private_dir: Path) -> None:
    theirs = private_dir / "home"
    theirs.mkdir()
    os.chmod(private_dir, 0o755)
    os.chown(theirs, pwd.getpwnam("nobody").pw_uid, -1)
    os.chmod(theirs, 0o700)
    instance = CyrusInstance(theirs / "cyrus", jmap_port=1, lmtp_port=2, imap_port=3, outbox_dir=theirs / "outbox")
    with pytest.raises(CyrusSetupError, match=f"cannot enter {theirs} "):
        instance.prepare()
    with pytest.raises(CyrusSetupError, match="prepare"):
        instance.start()


def test_paths_with_spaces_are_refused() -> None:
    with pytest.raises(CyrusSetupError):
        CyrusInstance(Path("/tmp/a b"), jmap_port=1, lmtp_port=2, imap_port=3, outbox_dir=Path("/tmp/o"))


def test_syslog_window_catches_lines_and_cleans_up(private_dir: Path) -> None:
    path = private_dir / "log"
    with SyslogWindow(path) as window:
        assert window.active and path.is_socket()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"<18>Nov 21 00:00:00 master[1]: cannot find executable", str(path))
            sender.sendto(b"<21>second line\n", str(path))
        deadline = time.monotonic() + 2
        while len(window.lines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert window.lines() == ["Nov 21 00:00:00 master[1]: cannot find executable", "second line"]
    assert not path.exists()


def test_syslog_window_leaves_an_existing_listener_alone(private_dir: Path) -> None:
    path = private_dir / "log"
    path.write_text("someone else's")
    with SyslogWindow(path) as window:
        assert not window.active and window.lines() == []
    assert path.read_text() == "someone else's"


class _Listing:
    """An imaplib connection that answers LIST with canned data (as imaplib returns it)."""

    def __init__(self, data: list[object]) -> None:
        self.data = data
        self.asked: list[tuple[str, str]] = []

    def list(self, directory: str, pattern: str) -> tuple[str, list[object]]:
        self.asked.append((directory, pattern))
        return "OK", self.data


def test_list_accounts_parses_every_form_of_a_list_answer() -> None:
    conn = _Listing(
        [
            b'(\\HasNoChildren) "/" user/b.c@x.example',
            b'(\\Noselect \\HasChildren) "/" user/b.c',
            b'(\\HasChildren) "/" "user/a@x.example"',
            (b'(\\HasNoChildren) "/" {18}', b"user/lit@y.example"),
            b'(\\HasNoChildren) "/" user/nodomain',
            b'(\\HasNoChildren) "/" shared',
            None,
        ]
    )
    assert cyrus_admin.list_accounts(conn) == ["a@x.example", "b.c@x.example", "lit@y.example"]  # type: ignore[arg-type]
    assert conn.asked == [('""', '"user/%"')]
