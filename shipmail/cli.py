"""The ``shipmail`` command: operator tasks on the database ``scripts/serve`` uses.

    shipmail serve [--workers N]                Cyrus + login checker + the API (foreground),
                                                each restarted when it dies
    shipmail migrate                            apply database migrations
    shipmail keys create --org NAME [--scope S ...] [--name LABEL] [--expires-in-days N] [--mailbox MBX ...]
    shipmail keys list --org NAME
    shipmail keys revoke KEY_ID
    shipmail domains verify NAME
    shipmail mailboxes resync-sieve             reinstall every mailbox's delivery script
    shipmail doctor [--repair [--purge-orphans]] differences between the database and the mail server
    shipmail openapi [--write]                  print (or write openapi/openapi.json)

Every command reads the same ``SHIPMAIL_*`` environment as the service (:mod:`shipmail.config`).
``keys create`` prints the new key as the last line of stdout; it is shown only this once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click

from shipmail.config import Settings
from shipmail.db.engine import Database
from shipmail.db.migrate import upgrade

if TYPE_CHECKING:
    from shipmail.runtime import Services

T = TypeVar("T")


def _settings() -> Settings:
    """The environment's settings, with the database migrated (every command may be the first)."""
    settings = Settings.from_env()
    upgrade(settings.database_url)
    return settings


def _run(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    async def go() -> T:
        db = Database(settings.database_url)
        try:
            async with db.session() as session:
                return await fn(session)
        finally:
            await db.dispose()

    return asyncio.run(go())


@asynccontextmanager
async def _services(settings: Settings) -> AsyncIterator[Services]:
    """The services of a command that works on the running mail server (the Cyrus instance under
    the data dir) outside the API: database, mail server, JMAP client; all closed afterwards."""
    from shipmail.app import default_mail_server
    from shipmail.http.cursors import CursorCodec
    from shipmail.jmap.client import JmapClient
    from shipmail.runtime import Services

    db = Database(settings.database_url)
    mail = default_mail_server(settings)
    transport = mail.jmap_transport()
    http = None
    if transport is not None:
        import httpx

        http = httpx.AsyncClient(transport=transport, timeout=settings.jmap_timeout)
    jmap = JmapClient(mail, timeout=settings.jmap_timeout, http=http)
    try:
        yield Services(settings=settings, db=db, mail=mail, jmap=jmap, cursors=CursorCodec(settings.secret_key))
    finally:
        await jmap.aclose()
        await mail.aclose()
        await db.dispose()


def _reconcile_at_startup(settings: Settings) -> None:
    """Complete or roll back the mailbox creates and deletes a crash left unfinished
    (:func:`shipmail.mailboxes.reconcile.reconcile_at_startup`: bounded in time, never fails the
    start); ``serve`` calls it once the mail server is up and before the API answers."""
    from shipmail.mailboxes.reconcile import reconcile_at_startup

    async def go() -> None:
        async with _services(settings) as svc:
            for outcome in await reconcile_at_startup(svc):
                logging.getLogger("shipmail.serve").info("start-up reconciliation: %s", outcome)

    asyncio.run(go())


@click.group()
def main() -> None:
    """shipmail: Shipmail's REST API over a JMAP mail server."""


@main.command()
def migrate() -> None:
    """Apply the database migrations."""
    settings = Settings.from_env()
    upgrade(settings.database_url)
    click.echo("database is up to date")


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--org", "org", required=True, help="Organisation name (created if needed).")
@click.option("--scope", "scopes", multiple=True, help="Scope to grant (repeatable); default '*'.")
@click.option("--name", default=None, help="A label for the key.")
@click.option("--expires-in-days", type=click.IntRange(min=1), default=None, help="Expire after N days.")
@click.option(
    "--mailbox",
    "mailbox_ids",
    multiple=True,
    help="Limit the key to this mailbox (mbx_..., repeatable): it sees no other mailbox and "
    "cannot create mailboxes or use domains.",
)
def keys_create(
    org: str, scopes: tuple[str, ...], name: str | None, expires_in_days: int | None, mailbox_ids: tuple[str, ...]
) -> None:
    """Create a key; the key itself is the last line of stdout (shown once)."""
    from shipmail.auth.scopes import parse_scopes
    from shipmail.keys import service as key_service

    try:
        parsed = parse_scopes(scopes or ("*",))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scope") from None
    settings = _settings()
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None

    async def go(session: Any) -> Any:
        org_row = await key_service.ensure_organization(session, org)
        return await key_service.create_key(
            session, settings.secret_key, org_row.id, parsed, name, expires, mailbox_ids=list(mailbox_ids) or None
        )

    try:
        created = _run(settings, go)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mailbox") from None
    r = created.record
    click.echo(f"id: {r.id}\norganization: {org} ({r.organization_id})\nscopes: {r.scopes}", err=False)
    if r.mailbox_ids:
        click.echo(f"mailboxes: {r.mailbox_ids}")
    if r.expires_at:
        click.echo(f"expires_at: {r.expires_at.isoformat()}")
    click.echo(created.secret)


@keys.command("list")
@click.option("--org", "org", required=True, help="Organisation name.")
def keys_list(org: str) -> None:
    """List an organisation's keys (id, prefix, scopes, state); never the keys themselves."""
    from sqlmodel import col, select

    from shipmail.keys import service as key_service
    from shipmail.keys.models import Organization

    settings = _settings()

    async def go(session: Any) -> Any:
        org_row = (await session.exec(select(Organization).where(col(Organization.name) == org))).first()
        return None if org_row is None else await key_service.list_keys(session, org_row.id)

    rows = _run(settings, go)
    if rows is None:
        raise click.ClickException(f"no organisation named {org!r}")
    now = datetime.now(UTC)
    for r in rows:
        state = "revoked" if r.revoked_at else "expired" if r.expires_at and r.expires_at <= now else "active"
        limit = f"\tmailboxes: {r.mailbox_ids}" if r.mailbox_ids else ""
        click.echo(f"{r.id}\t{r.prefix}...\t{state}\t{r.scopes}\t{r.name or ''}{limit}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (``key_...``)."""
    from shipmail.keys import service as key_service

    settings = _settings()
    record = _run(settings, lambda s: key_service.revoke_key(s, key_id))
    if record is None:
        raise click.ClickException(f"no key with id {key_id!r}")
    click.echo(f"revoked {key_id}")


@main.group()
def domains() -> None:
    """Domains."""


@domains.command("verify")
@click.argument("name")
def domains_verify(name: str) -> None:
    """Mark a domain verified without a DNS check (operator override; the background re-check never
    degrades it until DNS has verified it)."""
    from shipmail.domains import service as domain_service

    settings = _settings()
    try:
        domain = _run(settings, lambda s: domain_service.mark_verified(s, name))
    except ValueError as exc:
        raise click.ClickException(f"invalid domain name: {exc}") from None
    if domain is None:
        raise click.ClickException(f"no domain named {name!r}")
    click.echo(f"{domain.name} ({domain.id}) is verified")


@main.group()
def mailboxes() -> None:
    """Mailboxes."""


@mailboxes.command("resync-sieve")
def mailboxes_resync_sieve() -> None:
    """Rebuild every mailbox's delivery script from the database and install it on the running
    mail server (after an upgrade that changed what scripts contain)."""
    from shipmail.delivery.service import reinstall_all

    settings = _settings()

    async def go() -> tuple[int, list[str]]:
        async with _services(settings) as svc:
            return await reinstall_all(svc)

    installed, failed = asyncio.run(go())
    click.echo(f"reinstalled {installed} script(s)")
    if failed:
        raise click.ClickException(f"{len(failed)} mailbox(es) failed: {' '.join(failed)}")


#: ``shipmail doctor`` exit statuses besides 0 (no differences left).
DOCTOR_DIFFERENCES = 1
DOCTOR_CANNOT_CHECK = 3


@main.command()
@click.option("--repair", is_flag=True, help="Fix every difference found, then check again.")
@click.option(
    "--purge-orphans",
    is_flag=True,
    help="With --repair: also remove accounts without a mailbox that hold mail, after saving it "
    "under $SHIPMAIL_DATA_DIR/orphans/.",
)
def doctor(repair: bool, purge_orphans: bool) -> None:
    """List every difference between the database and the mail server, one per line (exit 1 when
    there is any, 3 when the check cannot run); with --repair fix them and check again (exit 0
    when none is left). Needs the mail server running (`shipmail serve`)."""
    from shipmail.doctor import service as doctor_service
    from shipmail.http.errors import ShipmailError
    from shipmail.mailserver.base import MailServerError
    from shipmail.mailserver.cyrus import CyrusError

    if purge_orphans and not repair:
        raise click.UsageError("--purge-orphans works only with --repair")
    settings = _settings()

    async def go() -> int:
        async with _services(settings) as svc:
            report = await doctor_service.check(svc)
            for difference in report.differences:
                click.echo(str(difference))
            click.echo(report.summary())
            if not repair or not report.differences:
                return DOCTOR_DIFFERENCES if report.differences else 0
            actions = await doctor_service.repair(
                svc, report.differences, purge_orphans=purge_orphans, orphans_dir=settings.data_dir / "orphans"
            )
            click.echo("")
            for action in actions:
                click.echo(str(action))
            after = await doctor_service.check(svc)
            click.echo("")
            click.echo("after repair:")
            for difference in after.differences:
                click.echo(str(difference))
            click.echo(after.summary())
            return DOCTOR_DIFFERENCES if after.differences else 0

    try:
        status = asyncio.run(go())
    except (MailServerError, ShipmailError, CyrusError, OSError) as exc:
        text = exc.message if isinstance(exc, ShipmailError) else f"{type(exc).__name__}: {exc}"
        click.echo(f"shipmail doctor: cannot check: {text} (is `shipmail serve` running?)", err=True)
        sys.exit(DOCTOR_CANNOT_CHECK)
    sys.exit(status)


@main.command()
@click.option("--write", is_flag=True, help="Write openapi/openapi.json instead of printing.")
def openapi(write: bool) -> None:
    """The OpenAPI document of the implemented API."""
    from shipmail.http.openapi import REPO_SPEC, build_document, dumps
    from shipmail.routes import OPERATIONS

    text = dumps(build_document(OPERATIONS))
    if write:
        REPO_SPEC.parent.mkdir(parents=True, exist_ok=True)
        REPO_SPEC.write_text(text)
        click.echo(f"wrote {REPO_SPEC}")
    else:
        sys.stdout.write(text)


@main.command()
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="uvicorn workers.")
def serve(workers: int) -> None:
    """Run the private Cyrus instance, the login checker, the inbound gateway and the API until
    SIGINT/SIGTERM.

    This process only supervises (:mod:`shipmail.mailserver.supervisor`): the login checker, the
    inbound gateway (LMTP on ``SHIPMAIL_LMTP_PORT``, in front of Cyrus's LMTP socket) and the API
    run as child processes (``serve-login-checker``, ``serve-gateway``, ``serve-api``), Cyrus's
    master as a daemon; each is restarted when it dies or stops answering. ``serve`` binds the
    API's and the gateway's listening sockets once and hands them to each generation.
    """
    from shipmail.mailserver import authd
    from shipmail.mailserver.cyrus import CyrusError, CyrusInstance
    from shipmail.mailserver.supervisor import (
        ChildProcess,
        CyrusComponent,
        OneShot,
        Supervisor,
        SupervisorError,
        bind_listener,
        http_answers,
        lmtp_greets,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("shipmail.serve")
    settings = Settings.from_env()
    upgrade(settings.database_url)
    instance = CyrusInstance.from_settings(settings)
    try:
        instance.prepare()  # logs each directory it makes traversable for user cyrus
    except CyrusError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        listener = bind_listener(settings.host, settings.port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None
    try:
        lmtp_listener = bind_listener("127.0.0.1", settings.lmtp_port)
    except OSError as exc:
        listener.close()
        raise click.ClickException(f"cannot listen for LMTP on 127.0.0.1:{settings.lmtp_port}: {exc}") from None
    if workers > 1 and settings.ratelimit_storage.startswith("memory"):
        log.warning("several workers with memory:// rate-limit storage: set SHIPMAIL_RATELIMIT_STORAGE=redis://")
    me = [sys.executable, "-m", "shipmail.cli"]
    parent = str(os.getpid())
    supervisor = Supervisor(
        [
            ChildProcess(
                "login checker",
                [*me, "serve-login-checker", "--parent", parent],
                ready=lambda timeout: authd.probe(instance.authd_socket, timeout),
                probe=lambda timeout: authd.probe(instance.authd_socket, timeout),
            ),
            CyrusComponent(instance),
            OneShot("start-up reconciliation", lambda: _reconcile_at_startup(settings)),
            ChildProcess(
                "inbound gateway",
                [*me, "serve-gateway", "--fd", str(lmtp_listener.fileno()), "--parent", parent],
                pass_fds=(lmtp_listener.fileno(),),
                ready=lambda timeout: lmtp_greets(settings.lmtp_port, timeout),
                probe=lambda timeout: lmtp_greets(settings.lmtp_port, timeout),
            ),
            ChildProcess(
                "API",
                [*me, "serve-api", "--fd", str(listener.fileno()), "--workers", str(workers), "--parent", parent],
                pass_fds=(listener.fileno(),),
                ready=http_answers(settings.host, settings.port, "/v1/openapi.json"),
            ),
        ]
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: supervisor.request_stop())
    try:
        supervisor.start()
        log.info(
            "serving on http://%s:%d (JMAP %s, IMAP %s:%d, LMTP 127.0.0.1:%d)",
            settings.host,
            settings.port,
            instance.jmap_session_url,
            settings.mailserver_host,
            settings.imap_port,
            settings.lmtp_port,
        )
        supervisor.wait()
    except SupervisorError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        log.info("stopping")
        supervisor.stop()
        listener.close()
        lmtp_listener.close()


@main.command("serve-login-checker", hidden=True)
@click.option("--parent", type=int, default=None, help="Pid of the serve process (end with it).")
def serve_login_checker(parent: int | None) -> None:
    """The login checker process of ``serve``: answers Cyrus's password checks (saslauthd
    protocol) on the instance's socket until SIGTERM/SIGINT."""
    from shipmail.app_passwords.logins import credential_lookup
    from shipmail.mailserver import procs
    from shipmail.mailserver.authd import AuthDaemon, run_until_signalled
    from shipmail.mailserver.cyrus import CyrusInstance

    procs.die_with_parent(signal.SIGTERM, parent)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    lookup, close_lookup = credential_lookup(settings.database_url)
    try:
        run_until_signalled(AuthDaemon(CyrusInstance.from_settings(settings).authd_socket, lookup))
    finally:
        close_lookup()


@main.command("serve-gateway", hidden=True)
@click.option("--fd", type=int, required=True, help="The LMTP listening socket, inherited from serve.")
@click.option("--parent", type=int, default=None, help="Pid of the serve process (end with it).")
def serve_gateway(fd: int, parent: int | None) -> None:
    """The inbound gateway process of ``serve``: LMTP on the inherited socket, handing every
    message to Cyrus's LMTP socket (:mod:`shipmail.inbound.gateway`) until SIGTERM/SIGINT."""
    import asyncio
    import socket

    from shipmail.inbound.backend import Target
    from shipmail.inbound.gateway import running_gateway
    from shipmail.inbound.journal import journal_path
    from shipmail.mailserver import procs
    from shipmail.mailserver.cyrus import CyrusInstance
    from shipmail.mailserver.cyrus_server import CyrusMailServer

    procs.die_with_parent(signal.SIGTERM, parent)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: a line per command otherwise
    settings = Settings.from_env()
    sock = socket.socket(fileno=fd)
    instance = CyrusInstance.from_settings(settings)
    backend = Target(path=instance.lmtp_socket)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        mail = CyrusMailServer.from_instance(instance, timeout=settings.jmap_timeout)
        try:
            async with running_gateway(
                database_url=settings.database_url,
                journal=journal_path(settings.data_dir),
                mail=mail,
                backend=backend,
                sock=sock,
                jmap_timeout=settings.jmap_timeout,
            ):
                logging.getLogger("shipmail.inbound").info("inbound gateway: LMTP -> %s", backend)
                await stop.wait()
        finally:
            await mail.aclose()

    asyncio.run(run())


#: Seconds a ``serve --workers N`` worker may take to start or to answer uvicorn's health ping.
WORKER_HEALTHCHECK_SECONDS = 30


@main.command("serve-api", hidden=True)
@click.option("--fd", type=int, required=True, help="The listening socket, inherited from serve.")
@click.option("--workers", type=click.IntRange(min=1), default=1)
@click.option("--parent", type=int, default=None, help="Pid of the serve process (end with it).")
def serve_api(fd: int, workers: int, parent: int | None) -> None:
    """The API process of ``serve``: uvicorn on the inherited socket, in this process for one
    worker, else uvicorn's own supervisor (which restarts dead workers) with ``workers`` workers."""
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from shipmail.mailserver import procs

    procs.die_with_parent(signal.SIGTERM, parent)
    sock = socket.socket(fileno=fd)
    _Server = _server_class()
    config = uvicorn.Config(
        "shipmail.app:create_app",
        factory=True,
        workers=workers,
        log_level="info",
        access_log=Settings.from_env().access_log,
        # uvicorn's supervisor kills a worker that has not answered its ping (or finished its
        # start-up) within this many seconds; its default of 5 s killed and restarted workers in a
        # loop on this 2-core machine under a load average of 20 (importing the app alone took
        # longer), dropping their connections. A hung worker is still replaced, 30 s later.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per JMAP request otherwise
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        _Server(config).run(sockets=[sock])


def _server_class() -> type:
    import uvicorn

    from shipmail.runtime import SHUTTING_DOWN

    class Server(uvicorn.Server):
        """uvicorn's server telling long-lived responses (the event stream) that it stops, so
        they end cleanly within the graceful shutdown instead of being cut."""

        def handle_exit(self, sig: int, frame: object) -> None:
            SHUTTING_DOWN.set()
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    return Server


if __name__ == "__main__":  # pragma: no cover
    main()
