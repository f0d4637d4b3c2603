"""The ``shipmail`` operator command (click's CliRunner) on a SQLite database under a temp data dir.

The app under test reads the same environment (``Settings.from_env()``), so keys created by the
command authenticate against it (same database, same generated ``secret.key``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
from click.testing import CliRunner, Result
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from shipmail.app import create_app
from shipmail.cli import main
from shipmail.config import Settings
from shipmail.http.openapi import build_document
from shipmail.routes import OPERATIONS
from tests.fakes import FakeMailServer

KEY_RE = re.compile(r"^sm_live_[A-Za-z0-9]{40}$")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SHIPMAIL_DATA_DIR", str(tmp_path))
    for name in ("SHIPMAIL_DATABASE_URL", "SHIPMAIL_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str, ok: bool = True) -> Result:
    result = runner.invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def create_key(runner: CliRunner, *args: str) -> tuple[str, str]:
    """(key id, full key) of a new key for organisation acme."""
    result = run(runner, "keys", "create", "--org", "acme", *args)
    lines = result.stdout.strip().splitlines()
    key = lines[-1]
    assert KEY_RE.match(key), result.stdout
    key_id = next(line.split(": ", 1)[1] for line in lines if line.startswith("id: "))
    assert key_id.startswith("key_")
    return key_id, key


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    app = create_app(Settings.from_env(), mail_server=FakeMailServer())
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_create_prints_the_key_last_and_it_authenticates(runner: CliRunner, data_dir: Path) -> None:
    _, key = create_key(runner, "--scope", "domains:read", "--name", "ci")
    assert (data_dir / "shipmail.db").exists()  # the default SQLite URL under the data dir
    app = create_app(Settings.from_env(), mail_server=FakeMailServer())
    with TestClient(app, base_url="http://testserver") as client:
        listed = client.get("/v1/domains", headers=bearer(key))
        assert listed.status_code == 200, listed.text
        created = client.post("/v1/domains", json={"name": "example.com"}, headers=bearer(key))
        assert created.status_code == 403, created.text
        assert created.json()["error"]["type"] == "authorization_error"


def test_keys_create_shows_scopes_and_defaults_to_all(runner: CliRunner, data_dir: Path) -> None:
    result = run(runner, "keys", "create", "--org", "acme")
    assert "scopes: *" in result.stdout
    key = result.stdout.strip().splitlines()[-1]
    app = create_app(Settings.from_env(), mail_server=FakeMailServer())
    with TestClient(app, base_url="http://testserver") as client:
        created = client.post("/v1/domains", json={"name": "example.com"}, headers=bearer(key))
        assert created.status_code == 201, created.text
        assert client.get("/v1/mailboxes", headers=bearer(key)).status_code == 200


def test_keys_create_accepts_several_scopes(runner: CliRunner, data_dir: Path) -> None:
    result = run(runner, "keys", "create", "--org", "acme", "--scope", "domains:write", "--scope", "mailboxes:read")
    assert "scopes: domains:write mailboxes:read" in result.stdout


def test_keys_create_with_expiry_prints_it(runner: CliRunner, data_dir: Path) -> None:
    result = run(runner, "keys", "create", "--org", "acme", "--expires-in-days", "3")
    assert "expires_at: " in result.stdout
    assert KEY_RE.match(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [
        ("--scope", "domains:admin"),
        ("--scope", "domains:read", "--scope", "nope"),
        ("--expires-in-days", "0"),
    ],
)
def test_keys_create_rejects_bad_options_with_a_usage_error(
    runner: CliRunner, data_dir: Path, args: tuple[str, ...]
) -> None:
    result = runner.invoke(main, ["keys", "create", "--org", "acme", *args])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "sm_live_" not in result.stdout
    if "--scope" in args:
        assert "--scope" in result.stderr and "unknown scope" in result.stderr


def test_keys_create_requires_an_org(runner: CliRunner, data_dir: Path) -> None:
    result = runner.invoke(main, ["keys", "create"])
    assert result.exit_code == 2
    assert "--org" in result.stderr


def test_keys_list_shows_id_prefix_and_state_never_the_key(runner: CliRunner, data_dir: Path) -> None:
    key_id, key = create_key(runner, "--scope", "domains:read", "--name", "ci")
    other_id, other = create_key(runner)
    result = run(runner, "keys", "list", "--org", "acme")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    row = next(line for line in lines if line.startswith(key_id))
    assert key[:12] in row  # display prefix sm_live_XXXX
    assert "active" in row
    assert "domains:read" in row and "ci" in row
    assert key not in result.stdout and other not in result.stdout
    assert key[8:] not in result.stdout and other[8:] not in result.stdout
    assert any(line.startswith(other_id) for line in lines)


def test_keys_list_unknown_org_fails(runner: CliRunner, data_dir: Path) -> None:
    create_key(runner)
    result = runner.invoke(main, ["keys", "list", "--org", "nobody"])
    assert result.exit_code == 1
    assert "nobody" in result.stderr


def test_keys_revoke_makes_the_key_answer_401(runner: CliRunner, data_dir: Path, client: TestClient) -> None:
    key_id, key = create_key(runner)
    other_id, other = create_key(runner)
    assert client.get("/v1/domains", headers=bearer(key)).status_code == 200

    result = run(runner, "keys", "revoke", key_id)
    assert key_id in result.stdout

    revoked = client.get("/v1/domains", headers=bearer(key))
    assert revoked.status_code == 401, revoked.text
    assert revoked.json()["error"]["type"] == "authentication_error"
    assert revoked.headers["WWW-Authenticate"].startswith("Bearer")
    # Only that key.
    assert client.get("/v1/domains", headers=bearer(other)).status_code == 200
    listing = run(runner, "keys", "list", "--org", "acme").stdout
    assert "revoked" in next(line for line in listing.splitlines() if line.startswith(key_id))
    assert "active" in next(line for line in listing.splitlines() if line.startswith(other_id))
    # Revoking again is harmless.
    run(runner, "keys", "revoke", key_id)


def test_keys_revoke_unknown_id_fails(runner: CliRunner, data_dir: Path) -> None:
    create_key(runner)
    result = runner.invoke(main, ["keys", "revoke", "key_doesnotexist"])
    assert result.exit_code == 1
    assert "key_doesnotexist" in result.stderr


def test_domains_verify_marks_an_api_domain_verified(runner: CliRunner, data_dir: Path, client: TestClient) -> None:
    _, key = create_key(runner)
    created = client.post("/v1/domains", json={"name": "Example.COM"}, headers=bearer(key))
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "pending"
    domain_id = created.json()["id"]

    # Any spelling of the name that normalises to the stored one.
    result = run(runner, "domains", "verify", "EXAMPLE.com.")
    assert "example.com" in result.stdout and domain_id in result.stdout

    shown = client.get(f"/v1/domains/{domain_id}", headers=bearer(key)).json()
    assert shown["status"] == "verified"
    assert shown["verified_at"] is not None
    # The override lifts the status only: the record flags stay what DNS showed (never checked).
    assert shown["mx_verified"] is False and shown["dkim_verified"] is False


@pytest.mark.parametrize(
    ("name", "message"), [("unknown.example", "no domain named"), ("not a domain", "invalid domain name")]
)
def test_domains_verify_unknown_or_invalid_name_fails(
    runner: CliRunner, data_dir: Path, name: str, message: str
) -> None:
    create_key(runner)  # creates and migrates the database
    result = runner.invoke(main, ["domains", "verify", name])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "verified" not in result.stdout


def test_openapi_prints_the_document(runner: CliRunner) -> None:
    result = run(runner, "openapi")
    document = json.loads(result.stdout)
    validate(document)
    assert document == build_document(OPERATIONS)


def test_the_key_is_never_stored_in_plain_text(runner: CliRunner, data_dir: Path, client: TestClient) -> None:
    keys = [create_key(runner)[1] for _ in range(3)]
    assert client.get("/v1/domains", headers=bearer(keys[0])).status_code == 200
    files = [p for p in data_dir.iterdir() if p.name.startswith("shipmail.db")]
    assert files
    stored = b"".join(p.read_bytes() for p in files)
    for key in keys:
        assert key.encode() not in stored
        assert key[8:].encode() not in stored  # nor its secret part
        assert key[:12].encode() in stored  # the display prefix is kept (sanity check of the read)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "list", "--org", "acme"), "no organisation named"),
        (("keys", "revoke", "key_unknown"), "no key with id"),
        (("domains", "verify", "example.com"), "no domain named"),
    ],
)
def test_commands_on_a_fresh_data_dir_answer_cleanly(
    runner: CliRunner, data_dir: Path, args: tuple[str, ...], message: str
) -> None:
    """Any command may be the first one: the database is migrated, no traceback."""
    result = runner.invoke(main, list(args))
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert message in result.stderr


def test_migrate_is_idempotent(runner: CliRunner, data_dir: Path) -> None:
    assert "up to date" in run(runner, "migrate").stdout
    assert "up to date" in run(runner, "migrate").stdout
    assert (data_dir / "shipmail.db").exists()


def test_settings_read_the_environment_blank_is_unset(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPMAIL_PORT", " 9000 ")
    monkeypatch.setenv("SHIPMAIL_SMTP_RELAY", "")
    monkeypatch.setenv("SHIPMAIL_JMAP_TIMEOUT", "  ")
    monkeypatch.setenv("SHIPMAIL_DATABASE_URL", " ")
    monkeypatch.setenv("SHIPMAIL_RATELIMIT_READ", "5/second")
    settings = Settings.from_env(imap_port=1143)  # keyword arguments win
    assert (settings.port, settings.imap_port, settings.jmap_port) == (9000, 1143, 18080)
    assert settings.smtp_relay is None and settings.jmap_timeout == 2.0
    assert settings.ratelimit_read == "5/second" and settings.ratelimit_write == "200/minute"
    assert settings.data_dir == data_dir.resolve()
    assert settings.database_url == f"sqlite:///{data_dir.resolve() / 'shipmail.db'}"
    with pytest.raises(pydantic.ValidationError):
        Settings.from_env(port="not a port")


def test_settings_secret_key_is_generated_once_or_taken_from_the_environment(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Settings.from_env().secret_key
    path = data_dir / "secret.key"
    assert len(first) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert Settings.from_env().secret_key == first
    monkeypatch.setenv("SHIPMAIL_SECRET_KEY", " from-the-environment ")
    assert Settings.from_env().secret_key == b"from-the-environment"


def test_settings_repr_shows_no_secret(data_dir: Path) -> None:
    settings = Settings.from_env(
        secret_key=b"hush-hush",
        database_url="postgresql://app:db-password@db.example:5432/shipmail",
        ratelimit_storage="redis://:redis-password@127.0.0.1:6379/0",
    )
    for text in (repr(settings), str(settings)):
        assert "hush-hush" not in text and "password@" not in text
        assert "postgresql://app:***@db.example:5432/shipmail" in text and "redis://:***@127.0.0.1:6379/0" in text
    assert settings.database_url.startswith("postgresql://app:db-password@")  # the value itself is intact


def test_doctor_without_a_mail_server_cannot_check(runner: CliRunner, data_dir: Path) -> None:
    # No Cyrus instance under the data dir: the check cannot run (exit 3), and says why.
    result = run(runner, "doctor", ok=False)
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "shipmail doctor: cannot check" in result.stderr and "shipmail serve" in result.stderr
    usage = run(runner, "doctor", "--purge-orphans", ok=False)
    assert usage.exit_code == 2 and "--purge-orphans works only with --repair" in usage.stderr
