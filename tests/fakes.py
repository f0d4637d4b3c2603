"""An in-memory MailServer for unit tests of the API and services (integration tests use Cyrus)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

from shipmail.mailserver.base import (
    AccountExists,
    AccountNotFound,
    JmapAccess,
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

    def _maybe_fail(self) -> None:
        if not self.up:
            raise MailServerUnavailable("down")
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    async def provision(self, address: str) -> None:
        self.calls.append(("provision", address))
        self._maybe_fail()
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

    async def set_password(self, address: str, password_hash: str) -> None:
        self.calls.append(("set_password", address))
        self._maybe_fail()

    def jmap_access(self, address: str) -> JmapAccess:
        return JmapAccess(session_url="http://127.0.0.1:1/jmap/", authorization="Bearer x", account_id=address)

    async def ping(self) -> bool:
        return self.up

    async def aclose(self) -> None:
        return None


class FakeJmap:
    """An ``httpx.MockTransport`` handler answering the JMAP session and Mailbox/get (RFC 8620/8621)
    for any account of :class:`FakeMailServer` (unit tests only)."""

    ROLES = ("inbox", "drafts", "sent", "trash", "junk", "archive")

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: "httpx.Request") -> "httpx.Response":
        import json

        import httpx

        self.requests += 1
        if request.method == "GET" and request.url.path == "/jmap/":
            return httpx.Response(200, json={
                "apiUrl": "/jmap/", "downloadUrl": "/jmap/download/{accountId}/{blobId}/{name}?accept={type}",
                "uploadUrl": "/jmap/upload/{accountId}/", "state": "s1",
                "capabilities": {"urn:ietf:params:jmap:core": {}, "urn:ietf:params:jmap:mail": {}},
                "accounts": {}, "primaryAccounts": {},
            })
        body = json.loads(request.content)
        responses = []
        for name, args, call_id in body["methodCalls"]:
            if name == "Mailbox/get":
                listed = [{"id": f"M{role}", "role": role} for role in self.ROLES]
                responses.append([name, {"accountId": args["accountId"], "state": "1", "list": listed,
                                         "notFound": []}, call_id])
            else:
                responses.append(["error", {"type": "unknownMethod"}, call_id])
        return httpx.Response(200, json={"methodResponses": responses, "sessionState": "s1"})
