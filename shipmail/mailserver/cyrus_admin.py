"""Blocking account administration on Cyrus over IMAP as the admin (run it in a worker thread).

Cyrus names (``virtdomains: userid``, ``unixhierarchysep: yes``, ``altnamespace: yes``): the
account ``first.last@example.com`` is the admin mailbox ``user/first.last@example.com``; its
sub-folders are ``user/first.last/Sent@example.com``. A special-use folder is made with
``CREATE <name> (USE (\\Sent))`` (RFC 6154); JMAP then shows its role. Deleting needs the ``x``
right for the admin first (``SETACL <name> admin x``), then ``DELETE`` removes every folder.

Errors: :class:`~shipmail.mailserver.base.MailServerUnavailable` for connection failures and
timeouts (``OSError``, including ``TimeoutError``, and imaplib's ``abort``), its subclass
:class:`~shipmail.mailserver.base.MailServerUnreachable` when not even the connection (and the
greeting) succeeded, so no command was sent;
:class:`~shipmail.mailserver.base.AccountExists` / :class:`AccountNotFound`;
:class:`~shipmail.mailserver.base.MailServerError` for any other ``NO``/``BAD``; ``ValueError``
for an address that cannot be a Cyrus account name (see :func:`split_address`).
"""

from __future__ import annotations

import imaplib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .base import (
    SPECIAL_USE_FOLDERS,
    AccountExists,
    AccountNotFound,
    MailServerError,
    MailServerUnavailable,
    MailServerUnreachable,
)

logger = logging.getLogger("shipmail.mailserver.cyrus_admin")

# Cyrus account names, conservatively: dots are fine (unixhierarchysep stores them as '^', so
# '^' itself would collide); '+' starts a sub-address at LMTP delivery (mail could never reach
# "a+b@x"); '/' is the separator, '%' '*' are LIST wildcards, '&' starts modified UTF-7, '!'
# separates the domain inside Cyrus. The domain needs a dot, so ``localhost`` (the servername,
# the admin's realm) is refused.
_LOCAL_RE = re.compile(r"^[a-z0-9._=\-]{1,64}$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


def split_address(address: str) -> tuple[str, str]:
    """``(local, domain)`` of a lower-case ``local@domain``; ``ValueError`` if unusable.

    Local parts: lower-case ASCII letters, digits and ``.`` ``_`` ``-`` ``=`` (no leading,
    trailing or double dot). The domain must be a lower-case DNS name with a dot (``localhost``
    is refused).
    """
    local, sep, domain = address.rpartition("@")
    if not sep or not _LOCAL_RE.match(local) or not _DOMAIN_RE.match(domain):
        raise ValueError(f"not a usable mailbox address: {address!r}")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise ValueError(f"not a usable mailbox address: {address!r}")
    return local, domain


def mailbox_name(address: str, folder: str | None = None) -> str:
    """The admin-visible IMAP name: ``user/local@domain`` or ``user/local/<folder>@domain``."""
    local, domain = split_address(address)
    return f"user/{local}/{folder}@{domain}" if folder else f"user/{local}@{domain}"


def quote(text: str) -> str:
    """An IMAP quoted string (names are validated: no ``"`` or ``\\`` can occur)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class AdminConnection:
    """How to log in to Cyrus's IMAP service as the admin; ``timeout`` in seconds per step."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    timeout: float

    @contextmanager
    def session(self) -> Iterator[imaplib.IMAP4]:
        """A logged-in IMAP connection, closed afterwards; maps failures (see module docstring).

        After a connection failure the socket is just closed (no LOGOUT that would wait for
        another ``timeout``).
        """
        try:
            conn = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailServerUnreachable(f"IMAP {self.host}:{self.port}: {exc}") from exc
        healthy = True
        try:
            try:
                conn.login(self.user, self.password)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                raise MailServerError("IMAP admin login refused") from exc
            yield conn
        except (OSError, imaplib.IMAP4.abort) as exc:
            healthy = False
            raise MailServerUnavailable(f"IMAP {self.host}:{self.port}: {exc}") from exc
        except imaplib.IMAP4.error as exc:  # a BAD answer
            raise MailServerError(f"IMAP: {exc}") from exc
        finally:
            try:
                if healthy:
                    conn.logout()
                else:
                    conn.shutdown()
            except (OSError, imaplib.IMAP4.error):
                pass


def _text(data: list[object]) -> str:
    parts = [
        item.decode(errors="replace") if isinstance(item, bytes) else str(item) for item in data if item is not None
    ]
    return " ".join(parts)


def _check(result: tuple[str, list[object]], what: str) -> None:
    status, data = result
    if status != "OK":
        raise MailServerError(f"{what}: {status} {_text(data)}")


def account_exists(conn: imaplib.IMAP4, address: str) -> bool:
    """Whether the account's Inbox exists (``LIST "" user/local@domain``)."""
    status, data = conn.list('""', quote(mailbox_name(address)))
    if status != "OK":
        raise MailServerError(f"LIST failed: {_text(list(data))}")
    return any(item is not None for item in data)


#: One untagged LIST answer: ``(<flags>) "<separator>" <name>`` (RFC 3501 section 7.2.2).
_LIST_LINE = re.compile(r'^\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')


def _list_name(item: object) -> tuple[str, str] | None:
    """``(flags, name)`` of one untagged LIST answer as imaplib returns it: a line
    ``(<flags>) "<sep>" <name>`` (the name an atom or a quoted string) or, for a name sent as a
    literal, a tuple ``(b'(<flags>) "<sep>" {n}', b'<name>')``; None for anything else."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], bytes) and isinstance(item[1], bytes):
        head, name = item[0].decode(errors="replace"), item[1].decode(errors="replace")
        flags = head.partition(")")[0].lstrip("(")
        return flags, name
    if not isinstance(item, bytes):
        return None
    line = item.decode(errors="replace")
    match = _LIST_LINE.match(line)
    if match is None:
        return None
    flags, name = match.group("flags"), match.group("name")
    if name.startswith('"') and name.endswith('"') and len(name) >= 2:
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return flags, name


def list_accounts(conn: imaplib.IMAP4) -> list[str]:
    """Every account's address, sorted: ``LIST "" "user/%"`` as the admin answers one
    ``user/local@domain`` per account (``virtdomains: userid`` puts the domain last) plus a
    ``\\Noselect`` ``user/local`` for the folders below it, which is skipped; so is a name that
    is not a usable address (:func:`split_address`), logged. Measured on Cyrus 3.6.1: every
    domain's accounts are listed to the global admin."""
    status, data = conn.list('""', quote("user/%"))
    if status != "OK":
        raise MailServerError(f"LIST user/%: {status} {_text(list(data))}")
    found: set[str] = set()
    for item in data:
        parsed = _list_name(item)
        if parsed is None:
            continue
        flags, name = parsed
        if "\\noselect" in flags.lower() or not name.startswith("user/"):
            continue
        address = name.removeprefix("user/")
        try:
            split_address(address)
        except ValueError:
            logger.warning("account %r is not a local@domain address; left out", name)
            continue
        found.add(address)
    return sorted(found)


def _delete(conn: imaplib.IMAP4, admin_user: str, name: str) -> tuple[str, list[object]]:
    status, data = conn.xatom("SETACL", quote(name), quote(admin_user), "x")
    if status != "OK":
        return status, list(data)
    status, data = conn.delete(quote(name))
    return status, list(data)


def provision(conn: imaplib.IMAP4, admin_user: str, address: str) -> None:
    """Create the account's Inbox and :data:`SPECIAL_USE_FOLDERS`; undo all on any failure."""
    name = mailbox_name(address)
    if account_exists(conn, address):
        raise AccountExists(address)
    status, data = conn.create(quote(name))
    if status != "OK":
        if "exists" in _text(list(data)).lower():
            raise AccountExists(address)
        raise MailServerError(f"CREATE {name}: {status} {_text(list(data))}")
    try:
        for folder, _role, flag in SPECIAL_USE_FOLDERS:
            folder_name = mailbox_name(address, folder)
            _check(conn.xatom("CREATE", quote(folder_name), f"(USE ({flag}))"), f"CREATE {folder_name}")
    except BaseException:
        logger.warning("provisioning %s failed; removing what was made", address)
        try:
            _delete(conn, admin_user, name)
        except (OSError, imaplib.IMAP4.error):
            logger.error("could not remove half-made account %s", address)
        raise
    logger.info("provisioned %s", address)


def deprovision(conn: imaplib.IMAP4, admin_user: str, address: str) -> None:
    """Delete the account and all its folders and mail."""
    name = mailbox_name(address)
    if not account_exists(conn, address):
        raise AccountNotFound(address)
    status, data = _delete(conn, admin_user, name)
    if status != "OK":
        if "does not exist" in _text(data).lower():
            raise AccountNotFound(address)
        raise MailServerError(f"DELETE {name}: {status} {_text(data)}")
    logger.info("deprovisioned %s", address)


#: The quota that blocks delivery to a suspended account (see :func:`set_storage_limit`).
SUSPENDED_QUOTA = "(STORAGE 0)"


def quota_list(limit_bytes: int | None) -> str:
    """The IMAP ``SETQUOTA`` resource list (RFC 2087) for a storage limit in bytes: ``()`` (no
    limit) for None, else ``(STORAGE <KiB>)``, rounded UP to whole KiB (Cyrus counts storage in
    KiB); 0 is :data:`SUSPENDED_QUOTA`."""
    if limit_bytes is None:
        return "()"
    return f"(STORAGE {-(-limit_bytes // 1024)})"


def set_storage_limit(conn: imaplib.IMAP4, address: str, limit_bytes: int | None) -> None:
    """Set the account's storage quota (``SETQUOTA user/local@domain <list>``, :func:`quota_list`):
    ``None`` no limit, ``0`` delivery blocked (a suspension), else the mailbox's quota; idempotent.
    Measured on Cyrus 3.6.1:

    - the quota root is the account (Inbox and every folder); LMTP then answers ``452 4.2.2 Over
      quota``, a TEMPORARY refusal (``lmtp_over_quota_perm_failure`` is off): at RCPT when the
      account is at or over the limit and holds mail, at DATA when it is empty or when this
      message would cross the limit, which needs ``lmtp_strict_quota: yes`` (:mod:`.cyrus_config`;
      without it an empty account takes ONE message before the quota counts). Nothing is
      delivered, so the delivery script (rules, auto-reply) does not run, and a refused message
      delivered again after the unblock is not dropped as a duplicate.
    - mail already there is untouched, and JMAP keeps working for the service: reads, keyword
      changes, moves between folders, destroy, blob upload, SieveScript/set, Mailbox/set. An
      IMAP ``APPEND`` over the limit answers ``NO Over quota``.
    - a ``MESSAGE 0`` limit would refuse even an empty account without strict quota, but with
      an account over a MESSAGE limit JMAP keyword changes fail (``overQuota``) and an
      ``Email/set`` move answers ``updated`` while the message is LOST: never use it.
    - the service sets no other quota, so ``()`` restores an account without a quota exactly;
      deleting the account removes its quota root.

    Raises :class:`AccountNotFound` when the account does not exist (``NO Mailbox does not
    exist``), :class:`MailServerError` for any other refusal.
    """
    name = mailbox_name(address)
    status, data = conn.setquota(quote(name), SUSPENDED_QUOTA if limit_bytes == 0 else quota_list(limit_bytes))
    if status != "OK":
        text = _text(list(data))
        if "does not exist" in text.lower():
            raise AccountNotFound(address)
        raise MailServerError(f"SETQUOTA {name}: {status} {text}")
    logger.info("storage limit of %s: %s", address, "none" if limit_bytes is None else limit_bytes)


def set_delivery_blocked(conn: imaplib.IMAP4, address: str, blocked: bool, quota_bytes: int | None = None) -> None:
    """Block (``STORAGE 0``) or unblock delivery to the account; unblocking restores the
    mailbox's own storage quota ``quota_bytes`` (None: no limit). See :func:`set_storage_limit`."""
    set_storage_limit(conn, address, 0 if blocked else quota_bytes)


_STATUS_SIZE = re.compile(r'^(?P<name>"(?:[^"\\]|\\.)*"|\S+) \(SIZE (?P<size>\d+)\)$')


def storage_usage(conn: imaplib.IMAP4, addresses: list[str]) -> dict[str, int]:
    """Bytes of mail each account holds: the sum of ``SIZE`` (RFC 8438) over its folders, read
    with one ``LIST ... RETURN (STATUS (SIZE))`` (RFC 5819) per 50 accounts; Cyrus's internal
    folders (``#jmap``, ``#sieve``) are left out. An address without an account is missing from
    the answer. Measured on Cyrus 3.6.1: a 5,334-byte message gives ``SIZE 5334`` on the Inbox,
    the quota root's usage in KiB rounds the same bytes up (``STORAGE 5``)."""
    usage: dict[str, int] = {}
    wanted = {mailbox_name(a): a for a in addresses}
    for start in range(0, len(addresses), 50):
        chunk = addresses[start : start + 50]
        patterns = []
        for address in chunk:
            local, domain = split_address(address)
            patterns += [quote(f"user/{local}@{domain}"), quote(f"user/{local}/*@{domain}")]
        conn.untagged_responses.pop("STATUS", None)
        status, data = conn.xatom("LIST", '""', "(" + " ".join(patterns) + ")", "RETURN", "(STATUS (SIZE))")
        if status != "OK":
            raise MailServerError(f"LIST RETURN STATUS: {status} {_text(list(data))}")
        for item in conn.untagged_responses.pop("STATUS", []):
            if not isinstance(item, bytes):
                continue
            match = _STATUS_SIZE.match(item.decode(errors="replace").strip())
            if match is None:
                continue
            name = match.group("name")
            if name.startswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            local_part, _, domain = name.removeprefix("user/").rpartition("@")
            owner, _, folder = local_part.partition("/")
            if folder.startswith("#"):
                continue
            owned = wanted.get(f"user/{owner}@{domain}")
            if owned is not None:
                usage[owned] = usage.get(owned, 0) + int(match.group("size"))
    return usage
