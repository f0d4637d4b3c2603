"""The :class:`~shipmail.mailserver.base.MailServer` for the private Cyrus IMAP 3.6 instance.

* Provisioning (provision, deprovision, exists) runs over IMAP as the Cyrus admin, with
  :mod:`imaplib` in a worker thread (:func:`asyncio.to_thread`); every network step is bounded by
  ``timeout`` seconds (socket timeout). See :mod:`.cyrus_admin` for the names and commands.
* JMAP access is a Bearer JWT (HS256) with exactly ``{"sub": address, "iat": <unix seconds>}``,
  signed with the instance's key (``http_jwt_key_dir``); Cyrus accepts it for
  ``http_jwt_max_age`` (1 h) and rejects any other claim. The session URL is
  ``http://host:jmap_port/jmap/`` and the account id is the address itself.
* Passwords: Cyrus checks logins through :mod:`shipmail.mailserver.authd` against our database,
  so :meth:`CyrusMailServer.set_password` has nothing to do.

Errors follow :mod:`.base`: ``MailServerUnavailable`` (connection refused, timeout, lost
connection), ``AccountExists``, ``AccountNotFound``, ``MailServerError``; ``ValueError`` for an
address Cyrus cannot hold (:func:`.cyrus_admin.split_address`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import httpx
from joserfc import jwt
from joserfc.jwk import OctKey

from . import cyrus_admin
from .base import JmapAccess

if TYPE_CHECKING:
    import imaplib

    from .cyrus import CyrusInstance

logger = logging.getLogger("shipmail.mailserver.cyrus_server")

T = TypeVar("T")


def make_jwt(secret: bytes, address: str, now: float | None = None) -> str:
    """A compact HS256 JWT Cyrus accepts for ``address``: header ``{"typ": "JWT", "alg":
    "HS256"}``, payload exactly ``{"sub": address, "iat": int(now)}`` (now: unix seconds)."""
    issued = int(time.time() if now is None else now)
    return jwt.encode({"alg": "HS256", "typ": "JWT"}, {"sub": address, "iat": issued},
                      OctKey.import_key(secret))


class CyrusMailServer:
    """Accounts and JMAP access on one Cyrus instance.

    ``host`` is where Cyrus's IMAP and HTTP services listen; ``timeout`` (seconds) bounds each
    network step. ``jwt_secret`` is the raw HS256 key (:attr:`CyrusInstance.jwt_secret`).
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
    ) -> None:
        self._admin = cyrus_admin.AdminConnection(host, imap_port, admin_user, admin_password,
                                                  timeout)
        self._jwt_secret = jwt_secret
        self._timeout = timeout
        url_host = f"[{host}]" if ":" in host else host
        self.session_url = f"http://{url_host}:{jmap_port}/jmap/"
        self._http = httpx.AsyncClient(timeout=timeout)

    @classmethod
    def from_instance(cls, instance: CyrusInstance, timeout: float = 2.0) -> CyrusMailServer:
        """A server for a prepared :class:`~shipmail.mailserver.cyrus.CyrusInstance`."""
        return cls(
            host=instance.connect_host,
            imap_port=instance.imap_port,
            jmap_port=instance.jmap_port,
            admin_user=instance.admin_user,
            admin_password=instance.admin_password,
            jwt_secret=instance.jwt_secret,
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"CyrusMailServer(session_url={self.session_url!r})"

    async def _run(self, work: Callable[[imaplib.IMAP4], T]) -> T:
        def in_thread() -> T:
            with self._admin.session() as conn:
                return work(conn)

        return await asyncio.to_thread(in_thread)

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

    async def set_password(self, address: str, password_hash: str) -> None:
        """Nothing to do: Cyrus asks :mod:`~shipmail.mailserver.authd`, which reads our database,
        so a new hash takes effect at the next login."""

    def jmap_access(self, address: str) -> JmapAccess:
        """A fresh Bearer JWT for ``address`` (valid 1 h from now; make a new one per use)."""
        token = make_jwt(self._jwt_secret, address)
        return JmapAccess(session_url=self.session_url, authorization=f"Bearer {token}",
                          account_id=address)

    async def ping(self) -> bool:
        """True when ``GET /jmap/`` answers 401 (or 200) within ``timeout``; never raises."""
        try:
            response = await self._http.get(self.session_url)
        except Exception:  # any failure means "down"
            return False
        return response.status_code in (200, 401)

    async def aclose(self) -> None:
        """Close the pooled HTTP client."""
        await self._http.aclose()

