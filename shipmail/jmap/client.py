"""One pooled async JMAP client for every account (RFC 8620 sections 2, 3 and 6).

- Sessions: fetched once per account from :meth:`MailServer.jmap_access`'s session URL, cached,
  and dropped when a response's ``sessionState`` differs from the cached one.
- Calls: a :class:`~shipmail.jmap.request.Request` of jmapc method objects (and this package's
  typed subclasses for what jmapc lacks), call ids and back-references assigned there. One :meth:`JmapClient.call` is
  exactly one HTTP request (``request_count`` counts them, for tests).
- Credentials: :meth:`MailServer.jmap_access` is asked again once the one in use is
  :data:`ACCESS_SECONDS` old (a Cyrus JWT lives an hour; making one per call cost ~0.1 ms).
- Cost per call (issue 10): the body is encoded once (:meth:`Request.body_bytes`), the HTTP request
  built straight on the session's parsed URL, the answer decoded by pydantic-core's JSON parser
  (``from_json``: the same values as :func:`json.loads`, about twice as fast on a page of Emails).
  Over the mail server's Unix socket (:class:`~shipmail.jmap.transport.UnixSocketTransport`) a
  call goes through the transport's :class:`~shipmail.jmap.transport.JmapCalls` (aiohttp: about a
  third of httpx's CPU per call, measured in that module), blob downloads too; any other transport (TCP, a test's
  ``httpx.MockTransport``) through the httpx client.
- Blobs: :meth:`JmapClient.open_blob` streams a download (RFC 8620 section 6.2).
- Failures: timeouts, refused connections and HTTP errors raise
  :class:`~shipmail.http.errors.ServiceUnavailable` (503, ``Retry-After``) within the configured
  timeout; method errors raise through :mod:`shipmail.jmap.errors` when a result is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

import httpx
import orjson
from jmapc import constants as jmap_constants

from shipmail.http.errors import ServiceUnavailable
from shipmail.jmap.errors import from_jmap
from shipmail.jmap.request import Request, Results
from shipmail.jmap.transport import CallFailed, JmapCalls
from shipmail.mailserver.base import JmapAccess, MailServer

logger = logging.getLogger("shipmail.jmap")

#: Slowest rate (bytes/s) at which a server is assumed to prepare a blob before sending it.
BLOB_BYTES_PER_SECOND = 10 * 1024 * 1024

#: The ``{name}`` of every download URL (RFC 8620 section 6.2): fixed, so no name sent by a client
#: ever becomes part of a URL path.
DOWNLOAD_NAME = "blob"

#: Seconds one credential from :meth:`MailServer.jmap_access` is reused (a Cyrus JWT is valid
#: for an hour after it is made).
ACCESS_SECONDS = 60.0

URN_CORE = jmap_constants.JMAP_URN_CORE
URN_MAIL = jmap_constants.JMAP_URN_MAIL


@dataclass(frozen=True)
class Session:
    """The parts of a JMAP Session resource the gateway uses (RFC 8620 section 2)."""

    account_id: str
    api_url: str
    download_url: str
    upload_url: str
    state: str
    capabilities: dict[str, Any]
    account_capabilities: dict[str, Any]
    api: httpx.URL | None = None  # ``api_url`` parsed once

    def __post_init__(self) -> None:
        if self.api is None:
            object.__setattr__(self, "api", httpx.URL(self.api_url))


def _decode(content: bytes) -> Any:
    """JSON ``content`` as Python values: orjson's parser (0.34 ms against pydantic-core's 0.57 ms
    and :mod:`json`'s 0.63 ms for a 256 KB Email/get answer, CPU, measured on this machine), and
    :func:`json.loads` for what it refuses (a lone surrogate escape, an integer beyond 64 bits,
    ``NaN``), so that whatever :mod:`json` decodes still decodes, to the same values."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


class JmapClient:
    """The gateway's HTTP side; create one per app (in the lifespan), close with :meth:`aclose`."""

    def __init__(self, mail: MailServer, *, timeout: float = 2.0, http: httpx.AsyncClient | None = None) -> None:
        self._mail = mail
        self._timeout = timeout
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(1.0, timeout)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self._sessions: dict[str, Session] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._access: dict[str, tuple[float, JmapAccess]] = {}
        self._default_headers = {k.lower(): v for k, v in self._http.headers.items()}
        self._timeouts = self._http.timeout.as_dict()
        # The JMAP call path of the client's transport when it has one (httpx keeps its transport
        # in ``_transport``; httpx is pinned below 0.29 in pyproject.toml).
        calls = getattr(getattr(self._http, "_transport", None), "jmap_calls", None)
        self._calls: JmapCalls | None = calls if isinstance(calls, JmapCalls) else None
        self._call_timeout = self._timeouts.get("read") or timeout
        self._connect_timeout = self._timeouts.get("connect") or min(1.0, timeout)
        self.request_count = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    # ----------------------------------------------------------------- transport

    def _access_of(self, address: str) -> JmapAccess:
        """``address``'s credential, made again once it is :data:`ACCESS_SECONDS` old."""
        now = time.monotonic()
        cached = self._access.get(address)
        if cached is not None and now - cached[0] < ACCESS_SECONDS:
            return cached[1]
        access = self._mail.jmap_access(address)
        if len(self._access) > 10_000:
            self._access.clear()
        self._access[address] = (now, access)
        return access

    async def _send(self, method: str, url: str | httpx.URL, address: str, **kw: Any) -> httpx.Response:
        access = self._access_of(address)
        headers = {"Authorization": access.authorization, "Accept": "application/json", **kw.pop("headers", {})}
        self.request_count += 1
        try:
            if "content" in kw:
                # Built directly: the client's default headers and timeout, as build_request
                # would merge them, without re-parsing the URL each call.
                request = httpx.Request(
                    method,
                    url,
                    headers={**self._default_headers, **{k.lower(): v for k, v in headers.items()}},
                    content=kw.pop("content"),
                    extensions={"timeout": self._timeouts},
                )
                response = await self._http.send(request)
            else:
                response = await self._http.request(method, url, headers=headers, **kw)
        except httpx.TimeoutException:
            logger.warning("JMAP %s %s timed out", method, url)
            raise ServiceUnavailable("The mail server did not answer in time; retry shortly.") from None
        except httpx.HTTPError as exc:
            logger.warning("JMAP %s %s failed: %s", method, url, type(exc).__name__)
            raise ServiceUnavailable("The mail server is unavailable; retry shortly.") from None
        return response

    async def session(self, address: str) -> Session:
        """The (cached) JMAP session of ``address``."""
        cached = self._sessions.get(address)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            cached = self._sessions.get(address)
            if cached is not None:
                return cached
            access = self._mail.jmap_access(address)
            response = await self._send("GET", access.session_url, address)
            if response.status_code != 200:
                logger.warning("JMAP session for an account answered %d", response.status_code)
                raise ServiceUnavailable("The mail server refused the session request; retry shortly.")
            data = response.json()
            base = access.session_url
            account_id = access.account_id
            if account_id not in data.get("accounts", {}):
                account_id = data.get("primaryAccounts", {}).get(URN_MAIL, account_id)
            session = Session(
                account_id=account_id,
                api_url=urljoin(base, data["apiUrl"]),
                download_url=urljoin(base, data["downloadUrl"]),
                upload_url=urljoin(base, data["uploadUrl"]),
                state=str(data.get("state", "")),
                capabilities=dict(data.get("capabilities", {})),
                account_capabilities=dict(data.get("accounts", {}).get(account_id, {}).get("accountCapabilities", {})),
            )
            self._sessions[address] = session
            return session

    def forget(self, address: str) -> None:
        """Drop the cached session and credential of ``address`` (after deprovisioning, say)."""
        self._sessions.pop(address, None)
        self._access.pop(address, None)

    # ----------------------------------------------------------------- calls

    async def call(self, address: str, request: Request) -> Results:
        """Send ``request`` for ``address``'s account as ONE HTTP request (RFC 8620 section 3.3);
        its responses (:meth:`Results.get` reads one by its :class:`~shipmail.jmap.request.Call`).

        Errors: 503 ServiceUnavailable (unreachable, timeout, HTTP error), 422 when the server
        refuses the request for a limit (``urn:ietf:params:jmap:error:limit``).
        """
        session = await self.session(address)
        body = request.body_bytes(session.account_id)
        if self._calls is not None:
            status, content = await self._post_call(session, address, body)
        else:
            response = await self._send(
                "POST",
                session.api or session.api_url,
                address,
                content=body,
                headers={"Content-Type": "application/json"},
            )
            status, content = response.status_code, response.content
        if status != 200:
            detail: Any = None
            with contextlib.suppress(ValueError):
                detail = _decode(content)
            logger.warning(
                "JMAP API request answered %d: %s",
                status,
                (detail or {}).get("type") if isinstance(detail, dict) else None,
            )
            if status in (400, 413) and isinstance(detail, dict) and "limit" in str(detail.get("type")):
                raise from_jmap({"type": "tooLarge", "description": detail.get("detail")})
            raise ServiceUnavailable("The mail server could not process the request; retry shortly.")
        data = _decode(content)
        state = str(data.get("sessionState", ""))
        if state and state != session.state:
            self._sessions.pop(address, None)
        return Results(responses=[tuple(r) for r in data.get("methodResponses", [])], session_state=state)

    async def _post_call(self, session: Session, address: str, body: bytes) -> tuple[int, bytes]:
        """``body`` POSTed to the session's apiUrl through :class:`JmapCalls` (the same request
        headers as the httpx path: ``Authorization``, ``Accept``, ``Content-Type``); status and
        body. Failures raise ServiceUnavailable as :meth:`_send` does."""
        assert self._calls is not None
        headers = {
            "Authorization": self._access_of(address).authorization,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self.request_count += 1
        try:
            return await self._calls.post(
                session.api_url, headers, body, timeout=self._call_timeout, connect_timeout=self._connect_timeout
            )
        except CallFailed as exc:
            if exc.timed_out:
                logger.warning("JMAP POST %s timed out", session.api_url)
                raise ServiceUnavailable("The mail server did not answer in time; retry shortly.") from None
            logger.warning("JMAP POST %s failed: %s", session.api_url, exc)
            raise ServiceUnavailable("The mail server is unavailable; retry shortly.") from None

    # ----------------------------------------------------------------- blobs

    async def open_blob(
        self,
        address: str,
        blob_id: str,
        *,
        content_type: str,
        headers: dict[str, str] | None = None,
        size: int | None = None,
    ) -> httpx.Response:
        """Start streaming blob ``blob_id`` (RFC 8620 section 6.2); the caller must ``aclose()``.

        The URL's ``{name}`` is always :data:`DOWNLOAD_NAME`: a client's file name never reaches a
        URL path (Cyrus answers 400 to a name with dot segments, ``.``, ``../x``); the caller names
        the file in its own ``Content-Disposition``. ``headers`` may carry ``Range``/``If-None-Match``
        to forward. The response is returned unread whatever its status; a transport failure
        raises ServiceUnavailable. ``size`` (bytes, when known) stretches the read timeout: a
        server may decode the whole blob before its first byte (Cyrus does, at roughly 60 MB/s),
        so the wait grows by 1 s per :data:`BLOB_BYTES_PER_SECOND` on top of the normal timeout;
        connecting stays bounded by it.
        """
        session = await self.session(address)
        url = (
            session.download_url.replace("{accountId}", quote(session.account_id, safe=""))
            .replace("{blobId}", quote(blob_id, safe=""))
            .replace("{name}", DOWNLOAD_NAME)
            .replace("{type}", quote(content_type or "application/octet-stream", safe=""))
        )
        access = self._access_of(address)
        read_timeout = self._timeout + (size or 0) / BLOB_BYTES_PER_SECOND
        if self._calls is not None:
            self.request_count += 1
            try:
                return await self._calls.stream(
                    url,
                    {"Authorization": access.authorization, **(headers or {})},
                    timeout=read_timeout,
                    connect_timeout=min(1.0, self._timeout),
                )
            except CallFailed as exc:
                if exc.timed_out:
                    raise ServiceUnavailable("The mail server did not answer in time; retry shortly.") from None
                raise ServiceUnavailable("The mail server is unavailable; retry shortly.") from None
        request = self._http.build_request(
            "GET",
            url,
            headers={"Authorization": access.authorization, **(headers or {})},
            timeout=httpx.Timeout(read_timeout, connect=min(1.0, self._timeout)),
        )
        self.request_count += 1
        try:
            return await self._http.send(request, stream=True)
        except httpx.TimeoutException:
            raise ServiceUnavailable("The mail server did not answer in time; retry shortly.") from None
        except httpx.HTTPError:
            raise ServiceUnavailable("The mail server is unavailable; retry shortly.") from None

    async def upload(self, address: str, data: bytes, content_type: str) -> str:
        """Upload ``data`` as a blob of ``address``'s account (RFC 8620 section 6.1); its blobId.

        The session's ``uploadUrl`` with ``{accountId}`` filled in; ``content_type`` is sent as
        ``Content-Type``. A refusal (4xx, e.g. over ``maxSizeUpload``) raises the mapped API error
        (413 ``tooLarge`` -> 422); transport failures and 5xx raise ServiceUnavailable.
        """
        session = await self.session(address)
        url = session.upload_url.replace("{accountId}", quote(session.account_id, safe=""))
        response = await self._send("POST", url, address, content=data, headers={"Content-Type": content_type})
        if response.status_code in (200, 201):
            try:
                blob_id = response.json()["blobId"]
            except (ValueError, KeyError, TypeError):
                raise ServiceUnavailable("The mail server answered the upload without a blobId.") from None
            return str(blob_id)
        logger.warning("JMAP upload answered %d", response.status_code)
        if response.status_code == 413:
            raise from_jmap(
                {"type": "tooLarge", "description": "upload exceeds the server's maxSizeUpload"}, what="upload"
            )
        if 400 <= response.status_code < 500 and response.status_code not in (401, 403, 429):
            raise from_jmap(
                {"type": "invalidArguments", "description": f"upload refused ({response.status_code})"}, what="upload"
            )
        raise ServiceUnavailable("The mail server could not store the upload; retry shortly.")
