"""Configuration, read once from the environment (pydantic-settings, prefix ``SHIPMAIL_``).

| variable | default | meaning |
|---|---|---|
| ``SHIPMAIL_DATA_DIR`` | ``./var`` | everything the service keeps: database, secrets, the Cyrus instance |
| ``SHIPMAIL_HOST`` / ``SHIPMAIL_PORT`` | ``127.0.0.1`` / ``8000`` | where the API listens |
| ``SHIPMAIL_DATABASE_URL`` | ``sqlite:///<data dir>/shipmail.db`` | SQLAlchemy URL (``postgresql://...`` scales out) |
| ``SHIPMAIL_JMAP_PORT`` | 18080 | the private Cyrus instance's HTTP (JMAP) port |
| ``SHIPMAIL_LMTP_PORT`` | 18024 | its LMTP port, on 127.0.0.1 only |
| ``SHIPMAIL_IMAP_PORT`` | 18143 | its IMAP port |
| ``SHIPMAIL_MAILSERVER_HOST`` | ``127.0.0.1`` | where the mail server listens |
| ``SHIPMAIL_SECRET_KEY`` | generated into ``<data dir>/secret.key`` | HMAC key for API key digests and cursors |
| ``SHIPMAIL_RATELIMIT_STORAGE`` | ``memory://`` | slowapi/limits storage URI (``redis://...`` for several workers) |
| ``SHIPMAIL_RATELIMIT_READ`` | ``1000/minute`` | per-key limit of the read tier |
| ``SHIPMAIL_RATELIMIT_WRITE`` | ``200/minute`` | per-key limit of the write tier |
| ``SHIPMAIL_RATELIMIT_SEND`` | ``100/minute`` | per-key limit of the send tier (sending and replying) |
| ``SHIPMAIL_MAX_BODY_BYTES`` | 4194304 (4 MiB) | request bodies above this answer 413 |
| ``SHIPMAIL_JMAP_TIMEOUT`` | 2.0 | seconds before a mail server call gives up (503) |
| ``SHIPMAIL_MAX_MAILBOXES_PER_ORG`` | 1000 | mailboxes one organisation may have (403 beyond); 0: no limit |
| ``SHIPMAIL_TEST_GRACE_DAY_SECONDS`` | unset | TESTS ONLY: the length of one ``grace_days`` day in seconds |
| ``SHIPMAIL_MX_HOST`` | this machine's host name | host customers' MX records point at |
| ``SHIPMAIL_OUTBOUND_HOST`` | the MX host | host that sends mail out: the SPF record asks for ``a:<it>`` |
| ``SHIPMAIL_SPF_INCLUDE`` | unset | when set, the SPF record asks for ``include:<it>`` instead of ``a:`` |
| ``SHIPMAIL_DKIM_SELECTOR`` | ``shipmail`` | DKIM selector of the RSA-SHA256 key of each domain |
| ``SHIPMAIL_DKIM_ED25519_SELECTOR`` | ``shipmail-ed25519`` | selector of the second (Ed25519-SHA256) key |
| ``SHIPMAIL_DNS_RESOLVER`` | unset (the system's) | ``host:port`` (``[v6]:port``) of the resolver the DNS checks ask |
| ``SHIPMAIL_DNS_TIMEOUT`` | 2.0 | seconds one DNS check waits for one lookup |
| ``SHIPMAIL_RATELIMIT_VERIFICATION`` | ``1/minute`` | per domain limit of ``verifyDomain``, ``getDomainDnsRecords`` |
| ``SHIPMAIL_DOMAIN_RECHECK_SECONDS`` | 3600 | background re-check of a domain this long after its last check |
| ``SHIPMAIL_DOMAIN_RECHECK_BATCH`` | 20 | most domains one background re-check run looks at |
| ``SHIPMAIL_IMPORT_PRIVATE_HOSTS`` | ``false`` | IMAP import sources may be loopback/private addresses |
| ``SHIPMAIL_SMTP_RELAY`` | unset | ``host:port`` for mail to other domains; unset: ``<data dir>/outbox/*.eml`` |
| ``SHIPMAIL_SMTP_USERNAME`` / ``_PASSWORD`` | unset | AUTH at the relay (after STARTTLS, or loopback) |
| ``SHIPMAIL_SEND_RETRY_SECONDS`` | 345600 (4 days) | how long a temporary refusal is retried |
| ``SHIPMAIL_SEND_RETRY_BASE`` | 30.0 | first retry delay in seconds; doubles per attempt (at most 1 h) |
| ``SHIPMAIL_DAILY_SEND_LIMIT`` / ``_MONTHLY_`` | 500 / 10000 | messages a mailbox may send per UTC day / month |
| ``SHIPMAIL_WEBHOOK_ALLOW_PRIVATE`` | 0 | 1: webhook URLs may be ``http://`` and private/loopback |
| ``SHIPMAIL_WEBHOOK_RETRY_BASE`` | 30 | seconds before a failed webhook delivery's 2nd attempt (doubling) |
| ``SHIPMAIL_JOBS_WORKER`` | ``true`` | run the background job worker in this process |
| ``SHIPMAIL_JOBS_POLL_INTERVAL`` | ``0.5`` | seconds between looks for due jobs queued by other processes |
| ``SHIPMAIL_ACCESS_LOG`` | ``true`` | ``serve`` logs one line per request (uvicorn's access log); ``false``: none |

An empty (or blank) variable counts as unset. Each default is written once, on its field below;
the table above and the README's repeat them for readers.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, SettingsConfigDict


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


def _without_password(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for ``repr``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def resolver_address(value: str) -> tuple[str, int]:
    """``(host, port)`` of a ``SHIPMAIL_DNS_RESOLVER`` value: ``host:port``, ``[v6]:port``, or a
    bare address (port 53). ValueError with the reason otherwise."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
        if not sep:
            raise ValueError("an IPv6 resolver address must be written [address]:port")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError("the resolver address has no host")
    try:
        port = int(port_text) if port_text else 53
    except ValueError:
        raise ValueError(f"the resolver port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError("the resolver port must be between 1 and 65535")
    return host, port


class Settings(BaseSettings):
    """The service's settings: ``SHIPMAIL_<FIELD>`` from the environment, keyword arguments winning.

    ``repr`` never shows ``secret_key`` nor a password inside ``database_url`` or
    ``ratelimit_storage``. Invalid values raise :class:`pydantic.ValidationError`.
    """

    model_config = SettingsConfigDict(env_prefix="SHIPMAIL_", frozen=True, extra="forbid")

    data_dir: Path = Path("./var")
    host: str = "127.0.0.1"
    port: int = 8000
    #: Unset: ``sqlite:///<data_dir>/shipmail.db``.
    database_url: str = Field("", validate_default=True)
    mailserver_host: str = "127.0.0.1"
    jmap_port: int = 18080
    lmtp_port: int = 18024
    imap_port: int = 18143
    #: Unset: the hex secret in ``<data_dir>/secret.key``, generated (mode 0600) on first use.
    secret_key: bytes = Field(b"", repr=False, validate_default=True)
    ratelimit_storage: str = "memory://"
    ratelimit_read: str = "1000/minute"
    ratelimit_write: str = "200/minute"
    ratelimit_send: str = "100/minute"
    max_body_bytes: int = 4 * 1024 * 1024
    jmap_timeout: float = 2.0
    smtp_relay: str | None = None
    #: Mailboxes one organisation may have, counted over all its mailboxes (also those scheduled
    #: for deletion); 0: no limit.
    max_mailboxes_per_org: int = Field(default=1000, ge=0)
    #: TESTS ONLY: the length in seconds of one day of ``DELETE /v1/mailboxes/{id}?grace_days=N``
    #: (unset: 86400), so a test can watch a scheduled deletion happen.
    test_grace_day_seconds: float | None = Field(default=None, gt=0)
    #: Unset: this machine's host name (``socket.gethostname()``, no DNS lookup): set it in production.
    mx_host: str = Field(default="", validate_default=True)
    #: Unset: ``mx_host``.
    outbound_host: str = Field(default="", validate_default=True)
    spf_include: str | None = None
    dkim_selector: str = Field(default="shipmail", pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
    dkim_ed25519_selector: str = Field(
        default="shipmail-ed25519", pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
    )
    dns_resolver: str | None = None
    dns_timeout: float = Field(default=2.0, gt=0, le=30)
    ratelimit_verification: str = "1/minute"
    domain_recheck_seconds: int = Field(default=3600, ge=1)
    domain_recheck_batch: int = Field(default=20, ge=1, le=1000)
    #: Whether an IMAP import source may be a loopback/private/link-local address (off: an API
    #: caller cannot make the service connect to hosts inside its own network).
    import_private_hosts: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    #: Seconds a message refused temporarily (4xx, unreachable relay) is retried before it fails.
    send_retry_seconds: float = Field(default=4 * 24 * 3600.0, gt=0)
    #: First retry delay (seconds) of a temporarily refused message; doubles each attempt, at most 1 h.
    send_retry_base: float = Field(default=30.0, gt=0)
    #: Messages a mailbox may send per UTC day and per UTC month, unless the mailbox says otherwise.
    daily_send_limit: int = Field(default=500, ge=0)
    monthly_send_limit: int = Field(default=10000, ge=0)
    #: ``1``: webhook URLs may be http:// and point at private/loopback addresses (tests, labs).
    webhook_allow_private: bool = False
    #: Seconds before the second attempt of a failing webhook delivery (doubling, with jitter).
    webhook_retry_base: float = 30.0
    #: Whether this process runs a background job worker (:mod:`shipmail.jobs`) beside the API.
    jobs_worker: bool = True
    #: Seconds between two looks for due jobs (a commit in this process wakes the worker at once).
    jobs_poll_interval: float = Field(default=0.5, gt=0, le=60)
    #: Whether ``shipmail serve`` writes uvicorn's access log (one line per request).
    access_log: bool = True

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            value = value.strip()
            # Blank: the default; a derived default (blank itself) is filled in by its validator.
            if not value and info.field_name and cls.model_fields[info.field_name].default not in ("", b""):
                raise PydanticUseDefault()
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()

    @field_validator("database_url")
    @classmethod
    def _default_database(cls, value: str, info: ValidationInfo) -> str:
        if value or "data_dir" not in info.data:
            return value
        return f"sqlite:///{info.data['data_dir'] / 'shipmail.db'}"

    @field_validator("secret_key")
    @classmethod
    def _default_secret(cls, value: bytes, info: ValidationInfo) -> bytes:
        if value or "data_dir" not in info.data:
            return value
        return _read_or_create_secret(info.data["data_dir"] / "secret.key")

    @field_validator("mx_host")
    @classmethod
    def _default_mx_host(cls, value: str) -> str:
        return (value or socket.gethostname()).rstrip(".").lower()

    @field_validator("outbound_host")
    @classmethod
    def _default_outbound_host(cls, value: str, info: ValidationInfo) -> str:
        if value or "mx_host" not in info.data:
            return value.rstrip(".").lower()
        return str(info.data["mx_host"])

    @field_validator("dns_resolver")
    @classmethod
    def _resolver_address(cls, value: str | None) -> str | None:
        if value is not None:
            resolver_address(value)  # ValueError with the reason
        return value

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read every ``SHIPMAIL_*`` variable; keyword arguments win over the environment."""
        return cls(**overrides)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name in ("database_url", "ratelimit_storage") and isinstance(value, str):
                value = _without_password(value)
            yield name, value

    @property
    def cyrus_dir(self) -> Path:
        """The private Cyrus instance's directory."""
        return self.data_dir / "cyrus"

    @property
    def outbox_dir(self) -> Path:
        """Where mail leaving for other domains lands when no SMTP relay is set (one ``.eml`` each)."""
        return self.data_dir / "outbox"

    @property
    def spool_dir(self) -> Path:
        """Where the mail server's ``sendmail`` program leaves every message it sends (vacation
        replies, redirects, EmailSubmission), until the service's outgoing queue takes it."""
        return self.data_dir / "spool"
