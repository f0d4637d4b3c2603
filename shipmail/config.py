"""Configuration, read once from the environment.

| variable | default | meaning |
|---|---|---|
| ``SHIPMAIL_DATA_DIR`` | ``./var`` | everything the service keeps: database, secrets, the Cyrus instance |
| ``SHIPMAIL_HOST`` / ``SHIPMAIL_PORT`` | ``127.0.0.1`` / ``8000`` | where the API listens |
| ``SHIPMAIL_DATABASE_URL`` | ``sqlite:///<data dir>/shipmail.db`` | SQLAlchemy URL (``postgresql+psycopg://...`` to scale out) |
| ``SHIPMAIL_JMAP_PORT`` / ``SHIPMAIL_LMTP_PORT`` / ``SHIPMAIL_IMAP_PORT`` | 18080 / 18024 / 18143 | the private Cyrus instance's ports on 127.0.0.1 |
| ``SHIPMAIL_MAILSERVER_HOST`` | ``127.0.0.1`` | where the mail server listens |
| ``SHIPMAIL_SECRET_KEY`` | generated into ``<data dir>/secret.key`` | HMAC key for API key digests and cursors |
| ``SHIPMAIL_RATELIMIT_STORAGE`` | ``memory://`` | slowapi/limits storage URI (``redis://...`` for several workers) |
| ``SHIPMAIL_RATELIMIT_READ`` / ``SHIPMAIL_RATELIMIT_WRITE`` | ``1000/minute`` / ``200/minute`` | per-key limit of each tier |
| ``SHIPMAIL_MAX_BODY_BYTES`` | 4194304 (4 MiB) | request bodies above this answer 413 |
| ``SHIPMAIL_JMAP_TIMEOUT`` | 2.0 | seconds before a mail server call gives up (503) |
| ``SHIPMAIL_SMTP_RELAY`` | unset | ``host:port`` for mail the server sends; unset: ``<data dir>/outbox/*.eml`` |
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _read_or_create_secret(path: Path, nbytes: int = 32) -> bytes:
    """Read a hex secret from ``path``, creating it (mode 0600) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        value = secrets.token_bytes(nbytes)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value.hex())
        return value


@dataclass(frozen=True)
class Settings:
    """The service's settings; build one with :meth:`from_env`."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = ""
    mailserver_host: str = "127.0.0.1"
    jmap_port: int = 18080
    lmtp_port: int = 18024
    imap_port: int = 18143
    secret_key: bytes = field(default=b"", repr=False)
    ratelimit_storage: str = "memory://"
    ratelimit_read: str = "1000/minute"
    ratelimit_write: str = "200/minute"
    max_body_bytes: int = 4 * 1024 * 1024
    jmap_timeout: float = 2.0
    smtp_relay: str | None = None

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read every ``SHIPMAIL_*`` variable; keyword arguments win over the environment."""
        data_dir = Path(str(overrides.pop("data_dir", _env("SHIPMAIL_DATA_DIR", "./var")))).resolve()
        values: dict[str, object] = {
            "data_dir": data_dir,
            "host": _env("SHIPMAIL_HOST", "127.0.0.1"),
            "port": int(_env("SHIPMAIL_PORT", "8000")),
            "database_url": _env("SHIPMAIL_DATABASE_URL", f"sqlite:///{data_dir / 'shipmail.db'}"),
            "mailserver_host": _env("SHIPMAIL_MAILSERVER_HOST", "127.0.0.1"),
            "jmap_port": int(_env("SHIPMAIL_JMAP_PORT", "18080")),
            "lmtp_port": int(_env("SHIPMAIL_LMTP_PORT", "18024")),
            "imap_port": int(_env("SHIPMAIL_IMAP_PORT", "18143")),
            "ratelimit_storage": _env("SHIPMAIL_RATELIMIT_STORAGE", "memory://"),
            "ratelimit_read": _env("SHIPMAIL_RATELIMIT_READ", "1000/minute"),
            "ratelimit_write": _env("SHIPMAIL_RATELIMIT_WRITE", "200/minute"),
            "max_body_bytes": int(_env("SHIPMAIL_MAX_BODY_BYTES", str(4 * 1024 * 1024))),
            "jmap_timeout": float(_env("SHIPMAIL_JMAP_TIMEOUT", "2.0")),
            "smtp_relay": os.environ.get("SHIPMAIL_SMTP_RELAY") or None,
        }
        values.update(overrides)
        if not values.get("secret_key"):
            env_secret = os.environ.get("SHIPMAIL_SECRET_KEY", "").strip()
            values["secret_key"] = (
                env_secret.encode() if env_secret else _read_or_create_secret(data_dir / "secret.key")
            )
        return cls(**values)  # type: ignore[arg-type]

    @property
    def cyrus_dir(self) -> Path:
        """The private Cyrus instance's directory."""
        return self.data_dir / "cyrus"

    @property
    def outbox_dir(self) -> Path:
        """Where mail sent by the mail server lands when no SMTP relay is set."""
        return self.data_dir / "outbox"
