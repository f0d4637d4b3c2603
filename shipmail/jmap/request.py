"""One JMAP request being built: method calls in order, call ids assigned, back-references.

RFC 8620 section 3.3 (Request), 3.7 (back-references). The method objects are jmapc's
(``MailboxGet``, ``EmailQuery``, ...) or this package's typed subclasses of jmapc's bases for the
methods jmapc lacks (``SieveScript/*`` in :mod:`shipmail.jmap.sieve_script`, ``Blob/lookup`` in
:mod:`shipmail.jmap.blob`). Call ids are
jmapc's (``APIRequest.from_calls``: ``single.<Type/method>`` for one call, ``<i>.<Type/method>``
otherwise); nothing outside this module spells one::

    request = Request()
    query = request.add(EmailQuery(filter={"inMailbox": inbox}, limit=50))
    emails = request.add(EmailGet(ids=request.ref(query, "/ids"), properties=LIST_PROPERTIES))
    results = await jmap.call(address, request)
    listed = results.get(emails, what="message listing")["list"]

Responses are read as the raw argument dicts the server sent (:meth:`Results.get`): decoding a page
of 50 Emails through jmapc's dataclasses_json response models costs more CPU than the whole HTTP
round trip (measured: ~4 ms against ~1 ms), and the gateway renders the JSON into its own wire
models anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from jmapc import Ref
from jmapc.api import APIRequest
from jmapc.methods import Method

from shipmail.jmap.errors import MissingResponse, from_jmap


@dataclass(frozen=True)
class Call:
    """The handle of one method call in a :class:`Request` (what :meth:`Results.get` reads)."""

    request: Request
    index: int
    name: str

    @property
    def id(self) -> str:
        """The call id jmapc gives this call (RFC 8620 section 3.2, ``methodCallId``)."""
        return f"single.{self.name}" if len(self.request) == 1 else f"{self.index}.{self.name}"


@dataclass(eq=False)
class Request:
    """Method calls sent together as ONE JMAP request; ``capabilities`` adds to the ``using`` set
    the methods declare (for methods whose capability depends on the server, such as Sieve's)."""

    capabilities: tuple[str, ...] = ()
    methods: list[Method] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.methods)

    def __iter__(self) -> Iterator[Method]:
        return iter(self.methods)

    def add(self, method: Method) -> Call:
        """Append ``method``; its handle."""
        self.methods.append(method)
        return Call(self, len(self.methods) - 1, method.jmap_method_name)

    @staticmethod
    def ref(call: Call, path: str) -> Ref:
        """A back-reference (RFC 8620 section 3.7) to ``path`` (a JSON pointer, ``/ids``,
        ``/list/*/emailIds``, ``/created/f/id``) in the result of ``call``."""
        return Ref(path, method=call.index)

    def body(self, account_id: str) -> dict[str, Any]:
        """The JSON body (RFC 8620 section 3.3) for ``account_id``.

        jmapc's ``APIRequest.from_calls`` encodes the calls (call ids, back-references, the
        ``using`` set); its ``to_dict()`` would walk the already-encoded calls a second time
        through dataclasses_json (half the cost of building a message-list request), so the
        body is put together from its parts here."""
        api = APIRequest.from_calls(account_id, list(self.methods))
        return {
            "using": sorted(api.using | set(self.capabilities)),
            "methodCalls": [list(call) for call in api.method_calls],
        }


@dataclass
class Results:
    """The method responses of one request, by call id."""

    responses: list[tuple[str, dict[str, Any], str]]
    session_state: str
    _by_id: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, args, call_id in self.responses:
            self._by_id.setdefault(call_id, (name, args))

    def error_type(self, call: Call) -> str | None:
        """The ``type`` of the method error ``call`` answered with (RFC 8620 section 3.6.2,
        e.g. ``stateMismatch``), or None when it did not fail."""
        name, args = self._by_id.get(call.id, ("", {}))
        return str(args.get("type")) if name == "error" else None

    def get(self, call: Call, *, what: str = "request") -> dict[str, Any]:
        """The response arguments of ``call``; a method error (RFC 8620 section 3.6.2) raises the
        mapped API error (:func:`shipmail.jmap.errors.from_jmap`, ``what`` names the object in its
        message); a missing response raises :class:`~shipmail.jmap.errors.MissingResponse`."""
        try:
            name, args = self._by_id[call.id]
        except KeyError:
            raise MissingResponse(f"JMAP response {call.id!r} missing") from None
        if name == "error":
            raise from_jmap(args, what=what)
        return args
