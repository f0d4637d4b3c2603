"""The one small interface every mail server implementation provides.

Exception tree::

    MailServerError                  any failure talking to the mail server
     +-- MailServerUnavailable       it cannot be reached or timed out (-> 503): the operation
     |    |                          may or may not have taken effect
     |    +-- MailServerUnreachable  no connection was made: the operation did NOT take effect
     +-- AccountExists               provisioning an address that already has an account
     +-- AccountNotFound             acting on an address that has no account
     +-- DeliveryRefused             the server refused a delivery for some recipients

Addresses are full, lower-case ``local@domain`` strings. Passwords never pass through this
interface: the mail server checks logins against our database (see :mod:`shipmail.mailserver.authd`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

#: The special-use folders every new account gets: (folder name, JMAP role, IMAP special-use flag).
SPECIAL_USE_FOLDERS: tuple[tuple[str, str, str], ...] = (
    ("Drafts", "drafts", "\\Drafts"),
    ("Sent", "sent", "\\Sent"),
    ("Trash", "trash", "\\Trash"),
    ("Junk", "junk", "\\Junk"),
    ("Archive", "archive", "\\Archive"),
)


class MailServerError(Exception):
    """A mail server operation failed."""


class MailServerUnavailable(MailServerError):
    """The mail server could not be reached, or did not answer in time."""


class MailServerUnreachable(MailServerUnavailable):
    """No connection to the mail server could be made (refused, unresolvable, connect timeout), so
    nothing was asked of it: the operation certainly did not take effect."""


class AccountExists(MailServerError):
    """An account for this address already exists on the mail server."""


class AccountNotFound(MailServerError):
    """No account exists for this address on the mail server."""


class DeliveryRefused(MailServerError):
    """The server refused the message for some (or all) recipients.

    ``refused`` maps each refused recipient to the server's ``(code, message)`` reply (an
    SMTP/LMTP reply code: 4xx temporary, 5xx permanent). LMTP delivers per recipient (RFC 2033
    section 4.2), so recipients listed in ``delivered`` DID receive the message.
    """

    def __init__(self, refused: dict[str, tuple[int, str]], delivered: list[str] | None = None) -> None:
        self.refused = dict(refused)
        self.delivered = list(delivered or [])
        summary = ", ".join(f"{rcpt}: {code} {text}" for rcpt, (code, text) in self.refused.items())
        super().__init__(f"delivery refused ({summary})")

    @property
    def temporary(self) -> bool:
        """Whether every refusal is temporary (4xx: retrying may succeed)."""
        return all(400 <= code < 500 for code, _ in self.refused.values())


@dataclass(frozen=True)
class JmapAccess:
    """How to act on one account over JMAP (RFC 8620).

    ``session_url`` is the absolute URL of the JMAP session resource; ``authorization`` is the
    full value of the ``Authorization`` header to send (a fresh short-lived credential: call
    :meth:`MailServer.jmap_access` again rather than caching it for long).
    """

    session_url: str
    authorization: str
    account_id: str


@dataclass(frozen=True)
class SieveTest:
    """A server-specific Sieve test with one string argument: ``<name> "<argument>"``, usable
    after ``require "<extension>"`` (e.g. Cyrus's ``jmapquery``)."""

    name: str
    extension: str
    argument: str


@dataclass(frozen=True)
class DeliverySieve:
    """What a server needs in the Sieve script it runs on every delivery to a mailbox.

    ``has_attachment``: a test that is true for a message with attachments, used to set the JMAP
    keyword ``$HasAttachment`` (RFC 8621 section 4.1.1) at delivery; None when the server sets
    that keyword itself. ``requires``: extensions every script must declare besides the ones
    its commands need.
    """

    has_attachment: SieveTest | None = None
    requires: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class MailHealth:
    """Which parts of the mail server answer (``GET /v1/status``): ``jmap`` (the JMAP/HTTP
    service), ``imap`` (where owners log in and the admin provisions), ``lmtp`` (inbound
    delivery) and ``login_checker`` (what checks owners' passwords, see :mod:`.authd`)."""

    jmap: bool
    imap: bool
    lmtp: bool
    login_checker: bool

    @property
    def all_up(self) -> bool:
        return self.jmap and self.imap and self.lmtp and self.login_checker


class MailServer(Protocol):
    """Account provisioning and access for one mail server.

    All methods are coroutines; blocking protocol work runs in a worker thread. Every method
    raises :class:`MailServerUnavailable` within its timeout when the server cannot be reached.
    """

    #: The JMAP capability URN under which the server offers Sieve scripts
    #: (``urn:ietf:params:jmap:sieve`` per RFC 9661, or the server's own).
    sieve_capability: str

    def address_problem(self, address: str) -> str | None:
        """Why this server cannot hold a working account named ``address`` (a lower-case
        ``local@domain``), as a sentence for the API's 422, or None when it can: names it reserves
        for itself (Cyrus: ``anyone``, ``anybody``, ``anonymous``), addresses too long for its
        logins. Server-specific, so it lives here; no I/O (the mailbox service asks before
        :meth:`provision`, so nothing is left to undo)."""
        ...

    async def provision(self, address: str) -> None:
        """Create the account ``address`` with the Inbox and :data:`SPECIAL_USE_FOLDERS`.

        Raises :class:`AccountExists` when the account is already there. On any failure no
        half-made account is left behind.
        """
        ...

    async def deprovision(self, address: str) -> None:
        """Delete the account ``address`` and all its mail; delivery to it is refused afterwards.

        Raises :class:`AccountNotFound` when there is no such account.
        """
        ...

    async def exists(self, address: str) -> bool:
        """Whether an account for ``address`` exists."""
        ...

    async def list_accounts(self) -> list[str]:
        """The address of every account on the server, sorted (what ``shipmail doctor`` compares
        with the database). Accounts whose name is not a ``local@domain`` address are left out."""
        ...

    async def set_password(self, address: str, password_hash: str) -> None:
        """Tell the server that the account's password changed (``password_hash`` is argon2id).

        Servers that check logins against our database (Cyrus, through :mod:`authd`) need no
        action; the hook exists for servers that keep their own (hashed) credential store.
        """
        ...

    async def set_suspended(self, address: str, suspended: bool, quota_bytes: int | None = None) -> None:
        """Block (``True``) or unblock (``False``) delivery to the account ``address``; idempotent.
        Unblocking puts back the mailbox's own storage quota ``quota_bytes`` (None: no limit; see
        :meth:`set_storage_quota`).

        While blocked, the server refuses every delivery TEMPORARILY (an LMTP/SMTP 4xx reply) so
        the sending MTA retries and the message arrives after the unblock; nothing is delivered,
        so the account's delivery script does not run. Mail already in the account stays, and
        :meth:`jmap_access` keeps working. Logins are not this method's business: the login
        checker refuses suspended mailboxes (:mod:`shipmail.mailboxes.logins`).

        Raises :class:`AccountNotFound` when there is no such account.
        """
        ...

    async def set_storage_quota(self, address: str, quota_bytes: int | None) -> None:
        """Limit the mail the account ``address`` may hold to ``quota_bytes`` (None: no limit);
        idempotent. Over the limit the server refuses inbound mail TEMPORARILY (LMTP ``452``) and
        the owner's IMAP ``APPEND``. Not to be called while the account is suspended (the block
        is a quota too; :meth:`set_suspended` puts the quota back when it unblocks).

        Raises :class:`AccountNotFound` when there is no such account.
        """
        ...

    async def storage_usage(self, addresses: list[str]) -> dict[str, int]:
        """Bytes of mail each account holds (what counts against its quota); an address without
        an account is missing from the answer."""
        ...

    def jmap_access(self, address: str) -> JmapAccess:
        """Credentials to act for ``address`` over JMAP without its password."""
        ...

    async def deliver(self, recipients: list[str], message: bytes, sender: str) -> None:
        """Deliver ``message`` (RFC 5322 bytes) to local ``recipients`` as inbound mail, with the
        envelope sender ``sender`` (``""`` for the null sender): the same path as mail from the
        internet (LMTP, RFC 2033, for Cyrus), so each mailbox's delivery script runs.

        Raises :class:`DeliveryRefused` when the server refuses some recipients (the others got
        the message) and :class:`MailServerUnavailable` when it cannot be reached or times out.
        """
        ...

    def sent_mail_spool(self) -> Path | None:
        """The directory where the server leaves every message it sends (EmailSubmission, Sieve
        vacation and redirect), one ``.eml`` file each, written atomically (a hidden temporary
        file renamed into place) with the envelope in two leading headers, ``X-Envelope-From:
        <sender>`` and ``X-Envelope-To: <rcpt>,`` folded per further ``<rcpt>`` (the format of
        :func:`shipmail.mailserver.sendmail.store_message`); None when the server sends nothing.
        The service's outgoing queue takes the files from there (and removes them)."""
        ...

    def delivery_sieve(self) -> DeliverySieve:
        """What this server needs in every mailbox's delivery script (see :class:`DeliverySieve`)."""
        ...

    def jmap_transport(self) -> httpx.AsyncBaseTransport | None:
        """A transport that reaches the JMAP server better than plain TCP to
        :attr:`JmapAccess.session_url` (e.g. a Unix socket), or None."""
        ...

    async def ping(self) -> bool:
        """Whether the server's JMAP service answers; never raises."""
        ...

    async def health(self) -> MailHealth:
        """Which of its parts answer, each probed within the server's timeout (at most about a
        second: ``GET /v1/status`` calls it); never raises."""
        ...

    async def aclose(self) -> None:
        """Release pooled connections."""
        ...
