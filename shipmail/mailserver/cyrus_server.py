"""The :class:`~shipmail.mailserver.base.MailServer` for the private Cyrus IMAP 3.6 instance.

* Provisioning (provision, deprovision, exists, list_accounts) runs over IMAP as the Cyrus admin, with
  :mod:`imaplib` in a worker thread (:func:`asyncio.to_thread`); every network step is bounded by
  ``timeout`` seconds (socket timeout). See :mod:`.cyrus_admin` for the names and commands.
* JMAP access is a Bearer JWT (HS256) with exactly ``{"sub": address, "iat": <unix seconds>}``,
  signed with the instance's key (``http_jwt_key_dir``); Cyrus accepts it for
  ``http_jwt_max_age`` (1 h) and rejects any other claim. The session URL is
  ``http://host:jmap_port/jmap/`` and the account id is the address itself.
* Suspension (:meth:`CyrusMailServer.set_suspended`): a ``STORAGE 0`` quota on the account, so
  LMTP refuses delivery with ``452 4.2.2`` (temporary) until it is replaced by the mailbox's own
  quota (:meth:`CyrusMailServer.set_storage_quota`, the same ``STORAGE`` limit in KiB) or none;
  needs ``lmtp_strict_quota: yes`` (see :func:`.cyrus_admin.set_storage_limit`). Usage
  (:meth:`CyrusMailServer.storage_usage`): ``SIZE`` of every folder (RFC 8438).
* Passwords: Cyrus checks logins through :mod:`shipmail.mailserver.authd` against our database,
  so :meth:`CyrusMailServer.set_password` has nothing to do.
* Delivery: LMTP (RFC 2033) to ``lmtp_host:lmtp_port`` (in ``shipmail serve``: the inbound
  gateway in front of Cyrus, ``SHIPMAIL_LMTP_PORT``) or to Cyrus's own Unix socket, with
  :mod:`smtplib` in a worker thread; connecting and the dialogue up to DATA are bounded by
  ``timeout``, the message transfer and the per-recipient replies by ``lmtp_timeout``. Cyrus
  silently drops a second delivery of the same Message-ID to the same mailbox (duplicate
  suppression: the reply is still 250).
* Delivery-time Sieve: Cyrus sets ``$HasAttachment`` only for Email/set and Email/import, so the
  delivery script sets it with the ``vnd.cyrus.jmapquery`` test ``{"hasAttachment":true}``
  (:meth:`CyrusMailServer.delivery_sieve`).

* Names (:meth:`CyrusMailServer.address_problem`): Cyrus turns the login names ``anyone``,
  ``anybody`` and ``anonymous`` (any case, any domain) into its global identifiers
  (``canonify_userid`` and ``is_userid_anonymous`` in imap/global.c): ``CREATE`` of
  ``user/anyone@...`` and ``user/anonymous@...`` answers ``NO Invalid mailbox name``, and
  ``anybody@...`` is created but its owner can never log in (measured on 3.6.1). The unix
  authorisation module copies a userid into an 81-byte buffer (``mycanonifyid`` in
  lib/auth_unix.c), so ``local@domain`` of more than 80 bytes is created but refused at every
  IMAP and JMAP Basic login (``Invalid user``). Both are refused before provisioning.

Errors follow :mod:`.base`: ``MailServerUnavailable`` (connection refused, timeout, lost
connection), ``AccountExists``, ``AccountNotFound``, ``DeliveryRefused``, ``MailServerError``;
``ValueError`` for an address Cyrus cannot hold (:func:`.cyrus_admin.split_address`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import smtplib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import httpx
from joserfc import jwt
from joserfc.jwk import OctKey

from shipmail.jmap.transport import UnixSocketTransport

from . import authd, cyrus_admin
from .base import DeliveryRefused, DeliverySieve, JmapAccess, MailHealth, MailServerUnavailable, SieveTest

if TYPE_CHECKING:
    import imaplib

    from .cyrus import CyrusInstance

logger = logging.getLogger("shipmail.mailserver.cyrus_server")

T = TypeVar("T")


def make_jwt(secret: bytes, address: str, now: float | None = None) -> str:
    """A compact HS256 JWT Cyrus accepts for ``address``: header ``{"typ": "JWT", "alg":
    "HS256"}``, payload exactly ``{"sub": address, "iat": int(now)}`` (now: unix seconds)."""
    # Cyrus 3.6 refuses an iat it sees as in the future, which a token made early in a second can
    # be (measured: 2 in 600); one second back keeps it well inside http_jwt_max_age.
    issued = int(time.time() if now is None else now) - 1
    return jwt.encode({"alg": "HS256", "typ": "JWT"}, {"sub": address, "iat": issued}, OctKey.import_key(secret))


#: Login names Cyrus reserves for its global identifiers (imap/global.c ``canonify_userid``):
#: ``anybody`` is an alias of ``anyone``.
RESERVED_LOCAL_PARTS = frozenset({"anyone", "anybody", "anonymous"})
#: Longest ``local@domain`` (bytes) a login can have (lib/auth_unix.c: an 81-byte buffer).
MAX_ADDRESS_LENGTH = 80

#: Longest wait of each :meth:`CyrusMailServer.health` probe, in seconds.
HEALTH_TIMEOUT = 1.0


async def _greets(host: str | None, port: int | None, expect: bytes, goodbye: bytes, timeout: float) -> bool:
    """Whether the TCP server on ``host:port`` (the Unix socket server at the path ``host`` when
    ``port`` is None) sends a first line starting with ``expect`` within ``timeout`` seconds;
    then ``goodbye`` is sent (a polite end). Never raises; False when neither is given."""
    if host is None:
        return False
    try:
        async with asyncio.timeout(timeout):
            if port is None:
                reader, writer = await asyncio.open_unix_connection(host)
            else:
                reader, writer = await asyncio.open_connection(host, port)
            try:
                line = await reader.readline()
                if line:
                    writer.write(goodbye)
                    await writer.drain()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    return line.startswith(expect)


_BARE_LF = re.compile(rb"(?<!\r)\n")


def lmtp_deliver(
    host: str,
    port: int | None,
    recipients: list[str],
    message: bytes,
    sender: str,
    *,
    timeout: float,
    data_timeout: float,
) -> None:
    """One LMTP transaction (RFC 2033), blocking: LHLO, MAIL, one RCPT per recipient, DATA and
    then one reply per accepted recipient (smtplib's ``sendmail`` reads only the first).
    ``port`` None: ``host`` is the path of a Unix socket.

    Bare LF line ends become CRLF. Raises :class:`DeliveryRefused` (per-recipient refusals; the
    others were delivered) or :class:`MailServerUnavailable` (connection, greeting, timeout).
    """
    data = _BARE_LF.sub(b"\r\n", message)
    clean = False
    try:
        lmtp = smtplib.LMTP(host, port or 0, timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailServerUnavailable(f"LMTP connect failed: {type(exc).__name__}") from exc
    try:
        code, reply = lmtp.ehlo()  # LHLO for smtplib.LMTP
        if code != 250:
            raise MailServerUnavailable(f"LMTP LHLO answered {code}")
        clean = True  # from here on a refusal leaves the dialogue in order: QUIT politely
        code, reply = lmtp.mail(sender)
        if code != 250:
            text = reply.decode("utf-8", "replace")
            raise DeliveryRefused({r: (code, text) for r in recipients})
        accepted: list[str] = []
        refused: dict[str, tuple[int, str]] = {}
        for rcpt in recipients:
            code, reply = lmtp.rcpt(rcpt)
            if code in (250, 251):
                accepted.append(rcpt)
            else:
                refused[rcpt] = (code, reply.decode("utf-8", "replace"))
        if not accepted:
            raise DeliveryRefused(refused)
        if lmtp.sock is not None:
            lmtp.sock.settimeout(data_timeout)
        try:
            code, reply = lmtp.data(data)
        except smtplib.SMTPDataError as exc:  # DATA itself refused (not 354)
            text = (
                exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            )
            refused.update({r: (exc.smtp_code, text) for r in accepted})
            raise DeliveryRefused(refused) from None
        replies = [(code, reply)] + [lmtp.getreply() for _ in accepted[1:]]
        delivered = []
        for rcpt, (code, reply) in zip(accepted, replies, strict=False):
            if code == 250:
                delivered.append(rcpt)
            else:
                refused[rcpt] = (code, reply.decode("utf-8", "replace"))
        if refused:
            raise DeliveryRefused(refused, delivered)
    except (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException) as exc:
        clean = False
        raise MailServerUnavailable(f"LMTP failed: {type(exc).__name__}") from exc
    finally:
        try:
            if clean:
                lmtp.quit()
        except (OSError, smtplib.SMTPException):
            pass
        lmtp.close()


#: Media types RFC 8621 never puts in ``textBody``/``htmlBody`` (section 4.1.4: only text/plain,
#: text/html and image/audio/video parts can be inline), so a part of one of them is always an
#: attachment, whatever its name or disposition: the ones Cyrus's ``hasAttachment`` misses in
#: real mail (nameless, signatures, reports) and common others. Cyrus's ``attachmentType``
#: jmapquery condition matches a part's exact ``type/subtype``.
NEVER_INLINE_TYPES: tuple[str, ...] = (
    "application/octet-stream",
    "application/postscript",
    "application/pdf",
    "application/zip",
    "application/pgp-signature",
    "application/pgp-encrypted",
    "application/pgp-keys",
    "application/pkcs7-signature",
    "application/x-pkcs7-signature",
    "application/pkcs7-mime",
    "application/x-pkcs7-mime",
    "application/ms-tnef",
    "application/vnd.ms-tnef",
    "application/msword",
    "application/json",
    "application/xml",
    "application/ics",
    "message/rfc822",
    "message/global",
    "message/partial",
    "message/external-body",
    "message/delivery-status",
    "message/global-delivery-status",
    "message/disposition-notification",
    "message/feedback-report",
    "text/rfc822-headers",
    "text/calendar",
    "text/csv",
    "text/x-vcard",
    "text/vcard",
)


class CyrusMailServer:
    """Accounts and JMAP access on one Cyrus instance.

    ``host`` is where Cyrus's IMAP and HTTP services listen; ``timeout`` (seconds) bounds each
    network step. ``jwt_secret`` is the raw HS256 key (:attr:`CyrusInstance.jwt_secret`).
    ``lmtp_port`` (on ``lmtp_host``, default 127.0.0.1) is where :meth:`deliver` speaks LMTP,
    else the Unix socket ``lmtp_socket`` (neither: delivery raises MailServerUnavailable);
    ``lmtp_timeout`` (seconds) bounds the message
    transfer and Cyrus's replies to it. ``authd_socket`` is where the login checker answers
    (:mod:`.authd`); :meth:`health` probes it.
    """

    #: Cyrus 3.6 offers Sieve over JMAP under its own URN (RFC 9661's is urn:ietf:params:jmap:sieve).
    sieve_capability = "https://cyrusimap.org/ns/jmap/sieve"

    def __init__(
        self,
        *,
        host: str,
        imap_port: int,
        jmap_port: int,
        admin_user: str,
        admin_password: str,
        jwt_secret: bytes,
        timeout: float = 2.0,
        lmtp_port: int | None = None,
        lmtp_host: str = "127.0.0.1",
        lmtp_socket: Path | None = None,
        lmtp_timeout: float = 30.0,
        jmap_socket: Path | None = None,
        authd_socket: Path | None = None,
        spool: Path | None = None,
    ) -> None:
        self._admin = cyrus_admin.AdminConnection(host, imap_port, admin_user, admin_password, timeout)
        self._authd_socket = authd_socket
        self._jwt_secret = jwt_secret
        self._timeout = timeout
        url_host = f"[{host}]" if ":" in host else host
        self.session_url = f"http://{url_host}:{jmap_port}/jmap/"
        self._http = httpx.AsyncClient(timeout=timeout)
        self._lmtp_host = lmtp_host
        self._lmtp_port = lmtp_port
        self._lmtp_socket = lmtp_socket
        self._lmtp_timeout = lmtp_timeout
        self._jmap_socket = jmap_socket
        self._spool = spool

    @classmethod
    def from_instance(
        cls, instance: CyrusInstance, timeout: float = 2.0, *, lmtp_port: int | None = None
    ) -> CyrusMailServer:
        """A server for a prepared :class:`~shipmail.mailserver.cyrus.CyrusInstance`. Deliveries
        go to ``lmtp_port`` on 127.0.0.1 when given (``shipmail serve``: the inbound gateway, so
        sandbox mail is seen like any other), else to the instance's own LMTP (its TCP port when
        it has one, else its Unix socket)."""
        return cls(
            host=instance.connect_host,
            imap_port=instance.imap_port,
            jmap_port=instance.jmap_port,
            admin_user=instance.admin_user,
            admin_password=instance.admin_password,
            jwt_secret=instance.jwt_secret,
            timeout=timeout,
            lmtp_port=lmtp_port or instance.lmtp_port,
            lmtp_socket=instance.lmtp_socket,
            jmap_socket=instance.jmap_socket,
            authd_socket=instance.authd_socket,
            spool=None if instance.smtp_relay else instance.outbox_dir,
        )

    def __repr__(self) -> str:
        return f"CyrusMailServer(session_url={self.session_url!r})"

    async def _run(self, work: Callable[[imaplib.IMAP4], T]) -> T:
        def in_thread() -> T:
            with self._admin.session() as conn:
                return work(conn)

        return await asyncio.to_thread(in_thread)

    def address_problem(self, address: str) -> str | None:
        """Why Cyrus cannot hold ``address`` (see the module docstring, "Names"), or None."""
        local, _, _ = address.rpartition("@")
        if local.lower() in RESERVED_LOCAL_PARTS:
            return f"the local part {local!r} is reserved by the mail server"
        if len(address.encode()) > MAX_ADDRESS_LENGTH:
            return f"the address is longer than the mail server's logins allow ({MAX_ADDRESS_LENGTH} characters)"
        try:
            cyrus_admin.split_address(address)
        except ValueError:
            return "the mail server cannot hold this address"
        return None

    async def provision(self, address: str) -> None:
        """Create ``address`` with Inbox, Drafts, Sent, Trash, Junk, Archive (see base)."""
        cyrus_admin.split_address(address)
        admin = self._admin.user
        await self._run(lambda conn: cyrus_admin.provision(conn, admin, address))

    async def deprovision(self, address: str) -> None:
        """Delete ``address`` and its mail; LMTP delivery to it then answers 550 (see base)."""
        cyrus_admin.split_address(address)
        admin = self._admin.user
        await self._run(lambda conn: cyrus_admin.deprovision(conn, admin, address))

    async def exists(self, address: str) -> bool:
        """Whether ``address`` has an account (False for addresses Cyrus cannot hold)."""
        try:
            cyrus_admin.split_address(address)
        except ValueError:
            return False
        return await self._run(lambda conn: cyrus_admin.account_exists(conn, address))

    async def list_accounts(self) -> list[str]:
        """Every account's address, sorted (``LIST "" "user/%"`` as the admin; see
        :func:`.cyrus_admin.list_accounts`)."""
        return await self._run(cyrus_admin.list_accounts)

    async def set_password(self, address: str, password_hash: str) -> None:
        """Nothing to do: Cyrus asks :mod:`~shipmail.mailserver.authd`, which reads our database,
        so a new hash takes effect at the next login."""

    async def set_suspended(self, address: str, suspended: bool, quota_bytes: int | None = None) -> None:
        """A ``STORAGE 0`` quota on the account while suspended, its own quota (or none)
        otherwise: LMTP answers ``452 4.2.2 Over quota`` (temporary); see
        :func:`.cyrus_admin.set_storage_limit`."""
        cyrus_admin.split_address(address)
        await self._run(lambda conn: cyrus_admin.set_delivery_blocked(conn, address, suspended, quota_bytes))

    async def set_storage_quota(self, address: str, quota_bytes: int | None) -> None:
        """``SETQUOTA user/local@domain (STORAGE <KiB, rounded up>)``, ``()`` for None; see
        :func:`.cyrus_admin.set_storage_limit`."""
        cyrus_admin.split_address(address)
        if quota_bytes is not None and quota_bytes <= 0:
            raise ValueError("a storage quota is a positive number of bytes")
        await self._run(lambda conn: cyrus_admin.set_storage_limit(conn, address, quota_bytes))

    async def storage_usage(self, addresses: list[str]) -> dict[str, int]:
        """``LIST ... RETURN (STATUS (SIZE))`` as the admin; see :func:`.cyrus_admin.storage_usage`."""
        valid = []
        for address in addresses:
            with contextlib.suppress(ValueError):
                cyrus_admin.split_address(address)
                valid.append(address)
        if not valid:
            return {}
        return await self._run(lambda conn: cyrus_admin.storage_usage(conn, valid))

    def jmap_access(self, address: str) -> JmapAccess:
        """A fresh Bearer JWT for ``address`` (valid 1 h from now; make a new one per use)."""
        token = make_jwt(self._jwt_secret, address)
        return JmapAccess(session_url=self.session_url, authorization=f"Bearer {token}", account_id=address)

    async def deliver(self, recipients: list[str], message: bytes, sender: str) -> None:
        """Deliver ``message`` over LMTP to ``recipients`` (see base and :func:`lmtp_deliver`)."""
        if not recipients:
            return
        host, port = self._lmtp_target()
        if host is None:
            raise MailServerUnavailable("no LMTP port configured")
        await asyncio.to_thread(
            lmtp_deliver,
            host,
            port,
            list(recipients),
            message,
            sender,
            timeout=self._timeout,
            data_timeout=max(self._timeout, self._lmtp_timeout),
        )

    def sent_mail_spool(self) -> Path | None:
        """The instance's outbox directory, where its ``sendmail`` program
        (:mod:`shipmail.mailserver.sendmail`) writes; None when it relays by itself."""
        return self._spool

    def _lmtp_target(self) -> tuple[str | None, int | None]:
        """``(host, port)`` of the LMTP service, ``(path, None)`` for a Unix socket, or
        ``(None, None)`` when there is none."""
        if self._lmtp_port is not None:
            return self._lmtp_host, self._lmtp_port
        if self._lmtp_socket is not None:
            return str(self._lmtp_socket), None
        return None, None

    def delivery_sieve(self) -> DeliverySieve:
        """Cyrus's delivery-script needs: ``$HasAttachment`` through ``jmapquery`` (Cyrus sets the
        keyword only on Email/set and Email/import, not on LMTP delivery).

        The API's rule is RFC 8621's: a message has an attachment when its ``attachments`` list is
        not empty. Cyrus's own ``hasAttachment`` test is a narrower heuristic (no nameless
        octet-stream or PostScript parts, no signatures, no message/partial), so the test is
        ``hasAttachment`` OR a part of a type RFC 8621 never shows inline
        (:data:`NEVER_INLINE_TYPES`: such a part is always in ``attachments``)."""
        conditions: list[dict[str, object]] = [{"hasAttachment": True}]
        conditions += [{"attachmentType": t} for t in NEVER_INLINE_TYPES]
        return DeliverySieve(
            has_attachment=SieveTest(
                name="jmapquery",
                extension="vnd.cyrus.jmapquery",
                argument=json.dumps({"operator": "OR", "conditions": conditions}, separators=(",", ":")),
            )
        )

    def jmap_transport(self) -> httpx.AsyncBaseTransport | None:
        """The Unix-socket transport to httpd when the instance has one, else None (TCP).

        Cyrus writes responses in 4 KiB pieces with Nagle on, so over TCP every answer above
        4 KiB waits ~40 ms for the client's delayed ACK; a Unix socket has no such stall. The
        transport is httpx's on a lean asyncio network layer (:mod:`shipmail.jmap.transport`:
        one write per request, large reads)."""
        if self._jmap_socket is None:
            return None
        return UnixSocketTransport(str(self._jmap_socket))

    async def ping(self) -> bool:
        """True when ``GET /jmap/`` answers 401 (or 200) within ``timeout``; never raises."""
        try:
            response = await self._http.get(self.session_url)
        except Exception:  # any failure means "down"
            return False
        return response.status_code in (200, 401)

    async def health(self) -> MailHealth:
        """Probes, all at once, each bounded by :data:`HEALTH_TIMEOUT` (or ``timeout`` if less):
        JMAP (``GET /jmap/`` answers 401), IMAP (greets ``* OK``), LMTP (greets ``220``: where
        deliveries go and, when that is a gateway's port, Cyrus's own LMTP socket too) and the
        login checker (answers a health request, :func:`.authd.probe_async`; down when no socket
        is configured). Never raises."""
        limit = min(HEALTH_TIMEOUT, self._timeout)

        async def jmap() -> bool:
            try:
                async with asyncio.timeout(limit):
                    return await self.ping()
            except TimeoutError:
                return False

        async def lmtp() -> bool:
            # Where deliveries go (the inbound gateway under serve) and, behind it, Cyrus's own LMTP.
            host, port = self._lmtp_target()
            probes = [_greets(host, port, b"220", b"QUIT\r\n", limit)]
            if port is not None and self._lmtp_socket is not None:
                probes.append(_greets(str(self._lmtp_socket), None, b"220", b"QUIT\r\n", limit))
            return all(await asyncio.gather(*probes))

        async def login_checker() -> bool:
            if self._authd_socket is None:
                return False
            return await authd.probe_async(self._authd_socket, limit)

        results = await asyncio.gather(
            jmap(),
            _greets(self._admin.host, self._admin.port, b"* OK", b"a LOGOUT\r\n", limit),
            lmtp(),
            login_checker(),
        )
        return MailHealth(jmap=results[0], imap=results[1], lmtp=results[2], login_checker=results[3])

    async def aclose(self) -> None:
        """Close the pooled HTTP client."""
        await self._http.aclose()
