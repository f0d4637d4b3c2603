"""An in-memory MailServer for unit tests of the API and services (integration tests use Cyrus)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

from shipmail.mailserver.base import (
    AccountExists,
    AccountNotFound,
    DeliveryRefused,
    DeliverySieve,
    JmapAccess,
    MailHealth,
    MailServerError,
    MailServerUnavailable,
)


class FakeMailServer:
    """Records accounts; ``fail_next`` makes the next call raise the given exception."""

    sieve_capability = "urn:ietf:params:jmap:sieve"

    def __init__(self) -> None:
        self.accounts: set[str] = set()
        self.fail_next: Exception | None = None
        self.up = True
        self.calls: list[tuple[str, str]] = []
        #: Every accepted delivery: (recipients, message, sender).
        self.delivered: list[tuple[list[str], bytes, str]] = []
        #: Accounts whose delivery is blocked (:meth:`set_suspended`).
        self.suspended: set[str] = set()
        #: Storage quota in bytes per account (:meth:`set_storage_quota`; None: no limit).
        self.quotas: dict[str, int | None] = {}
        #: Bytes each account holds, as :meth:`storage_usage` reports them (default 0).
        self.usage: dict[str, int] = {}
        #: Local parts this server reserves (:meth:`address_problem`); provisioning one fails as
        #: on Cyrus ("Invalid mailbox name").
        self.reserved: set[str] = {"anyone", "anybody", "anonymous"}
        #: Parts :meth:`health` reports down (``jmap``, ``imap``, ``lmtp``, ``login_checker``).
        self.down: set[str] = set()

    def _maybe_fail(self) -> None:
        if not self.up:
            raise MailServerUnavailable("down")
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def address_problem(self, address: str) -> str | None:
        if address.rpartition("@")[0] in self.reserved:
            return "the local part is reserved by the mail server"
        return None

    async def provision(self, address: str) -> None:
        self.calls.append(("provision", address))
        self._maybe_fail()
        if address.rpartition("@")[0] in self.reserved:
            raise MailServerError(f"CREATE user/{address}: NO Invalid mailbox name")
        if address in self.accounts:
            raise AccountExists(address)
        self.accounts.add(address)

    async def deprovision(self, address: str) -> None:
        self.calls.append(("deprovision", address))
        self._maybe_fail()
        if address not in self.accounts:
            raise AccountNotFound(address)
        self.accounts.discard(address)

    async def exists(self, address: str) -> bool:
        return address in self.accounts

    async def list_accounts(self) -> list[str]:
        return sorted(self.accounts)

    async def set_password(self, address: str, password_hash: str) -> None:
        self.calls.append(("set_password", address))
        self._maybe_fail()

    async def set_suspended(self, address: str, suspended: bool, quota_bytes: int | None = None) -> None:
        self.calls.append(("set_suspended" if suspended else "set_unsuspended", address))
        self._maybe_fail()
        if address not in self.accounts:
            raise AccountNotFound(address)
        if suspended:
            self.suspended.add(address)
        else:
            self.suspended.discard(address)
            self.quotas[address] = quota_bytes

    async def set_storage_quota(self, address: str, quota_bytes: int | None) -> None:
        self.calls.append(("set_storage_quota", address))
        self._maybe_fail()
        if address not in self.accounts:
            raise AccountNotFound(address)
        self.quotas[address] = quota_bytes

    async def storage_usage(self, addresses: list[str]) -> dict[str, int]:
        self._maybe_fail()
        return {a: self.usage.get(a, 0) for a in addresses if a in self.accounts}

    def jmap_access(self, address: str) -> JmapAccess:
        return JmapAccess(session_url="http://127.0.0.1:1/jmap/", authorization="Bearer x", account_id=address)

    async def deliver(self, recipients: list[str], message: bytes, sender: str) -> None:
        """Records the message for the recipients that have accounts; refuses the others (550)."""
        self.calls.append(("deliver", ",".join(recipients)))
        self._maybe_fail()
        accepted = [r for r in recipients if r in self.accounts]
        refused = {r: (550, "5.1.1 Mailbox does not exist") for r in recipients if r not in self.accounts}
        if accepted:
            self.delivered.append((accepted, message, sender))
        if refused:
            raise DeliveryRefused(refused, accepted)

    def delivery_sieve(self) -> DeliverySieve:
        return DeliverySieve()

    def sent_mail_spool(self) -> Path | None:
        return None

    async def ping(self) -> bool:
        return self.up

    async def health(self) -> MailHealth:
        def up(part: str) -> bool:
            return self.up and part not in self.down

        return MailHealth(jmap=up("jmap"), imap=up("imap"), lmtp=up("lmtp"), login_checker=up("login_checker"))

    def jmap_transport(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class FakeJmap:
    """An ``httpx.MockTransport`` handler answering the JMAP session and Mailbox/get (RFC 8620/8621)
    for any account of :class:`FakeMailServer` (unit tests only); uploads (kept in ``blobs``; downloads
    serve them, 404 otherwise) and
    SieveScript/get, /set (RFC 9661: create, activate, destroy; kept in ``scripts``)."""

    ROLES = ("inbox", "drafts", "sent", "trash", "junk", "archive")

    def __init__(self) -> None:
        self.requests = 0
        self.blobs: dict[str, bytes] = {}
        #: Sieve scripts by account, then id: {"id", "name", "blobId", "isActive"}.
        self.scripts: dict[str, dict[str, dict[str, object]]] = {}
        self._script_serial = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        import json

        import httpx

        self.requests += 1
        if request.method == "GET" and request.url.path == "/jmap/":
            return httpx.Response(
                200,
                json={
                    "apiUrl": "/jmap/",
                    "downloadUrl": "/jmap/download/{accountId}/{blobId}/{name}?accept={type}",
                    "uploadUrl": "/jmap/upload/{accountId}/",
                    "state": "s1",
                    "capabilities": {"urn:ietf:params:jmap:core": {}, "urn:ietf:params:jmap:mail": {}},
                    "accounts": {},
                    "primaryAccounts": {},
                },
            )
        if request.method == "GET" and request.url.path.startswith("/jmap/download/"):
            # /jmap/download/{accountId}/{blobId}/{name}: uploaded blobs only (RFC 8620 section 6.2).
            parts = request.url.path.split("/")
            data = self.blobs.get(parts[4]) if len(parts) > 4 else None
            if data is None:
                return httpx.Response(404, text="blob not found")
            return httpx.Response(200, content=data, headers={"Content-Type": "application/octet-stream"})
        if request.method == "POST" and request.url.path.startswith("/jmap/upload/"):
            blob_id = f"G{len(self.blobs) + 1:040x}"
            self.blobs[blob_id] = request.content
            return httpx.Response(
                201,
                json={
                    "accountId": request.url.path.split("/")[3],
                    "blobId": blob_id,
                    "size": len(request.content),
                    "type": request.headers.get("content-type"),
                },
            )
        body = json.loads(request.content)
        responses: list[list[object]] = []
        for name, args, call_id in body["methodCalls"]:
            if name == "Mailbox/get":
                listed = [{"id": f"M{role}", "role": role} for role in self.ROLES]
                responses.append(
                    [name, {"accountId": args["accountId"], "state": "1", "list": listed, "notFound": []}, call_id]
                )
            elif name in ("SieveScript/get", "SieveScript/set"):
                responses.append([name, self._sieve(name, args, responses, body["methodCalls"]), call_id])
            else:
                responses.append(["error", {"type": "unknownMethod"}, call_id])
        return httpx.Response(200, json={"methodResponses": responses, "sessionState": "s1"})

    def _sieve(
        self, name: str, args: dict[str, object], done: list[list[object]], calls: list[list[object]]
    ) -> dict[str, object]:
        account = str(args["accountId"])
        scripts = self.scripts.setdefault(account, {})
        if name == "SieveScript/get":
            return {"accountId": account, "state": "1", "list": [dict(s) for s in scripts.values()], "notFound": []}
        created: dict[str, object] = {}
        not_created: dict[str, object] = {}
        for cid, spec in (args.get("create") or {}).items():  # type: ignore[attr-defined]
            if spec.get("blobId") not in self.blobs:
                not_created[cid] = {"type": "blobNotFound"}
                continue
            self._script_serial += 1
            sid = f"S{self._script_serial}"
            scripts[sid] = {"id": sid, "name": spec.get("name"), "blobId": spec["blobId"], "isActive": False}
            created[cid] = {"id": sid, "isActive": False}
        activate = args.get("onSuccessActivateScript")
        if isinstance(activate, str) and activate.startswith("#") and activate[1:] in created:
            target = created[activate[1:]]["id"]  # type: ignore[index]
            for s in scripts.values():
                s["isActive"] = s["id"] == target
            created[activate[1:]]["isActive"] = True  # type: ignore[index]
        destroy = args.get("destroy")
        ref = args.get("#destroy")
        if isinstance(ref, dict):
            source = next(r for r in done if r[2] == ref["resultOf"])
            destroy = [s["id"] for s in source[1]["list"]]  # type: ignore[index]
        destroyed, not_destroyed = [], {}
        for sid in destroy or []:  # type: ignore[attr-defined]
            if sid not in scripts:
                not_destroyed[sid] = {"type": "notFound"}
            elif scripts[sid]["isActive"]:
                not_destroyed[sid] = {"type": "scriptIsActive"}
            else:
                del scripts[sid]
                destroyed.append(sid)
        return {
            "accountId": account,
            "oldState": "1",
            "newState": "2",
            "created": created or None,
            "notCreated": not_created or None,
            "destroyed": destroyed or None,
            "notDestroyed": not_destroyed or None,
        }
