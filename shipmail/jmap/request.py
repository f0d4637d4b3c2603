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

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dataclasses_json.core import _user_overrides_or_exts
from jmapc import Ref
from jmapc import constants as jmap_constants
from jmapc.api import APIRequest
from jmapc.methods import Method
from jmapc.ref import REF_SENTINEL_KEY

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
        """The JSON body (RFC 8620 section 3.3) for ``account_id``: exactly what jmapc's
        ``APIRequest.from_calls`` encodes (call ids, back-references, the ``using`` set), with
        ``using`` extended by ``capabilities``.

        The calls go through :func:`encode_calls` (the same dict, key order included, about ten
        times cheaper than dataclasses_json's walk); a call it does not cover goes through
        jmapc's own encoder (:func:`jmapc_body`)."""
        calls = encode_calls(account_id, self.methods)
        if calls is None:
            return jmapc_body(account_id, self)
        using = {jmap_constants.JMAP_URN_CORE, *self.capabilities}
        for method in self.methods:
            using |= method.using
        return {"using": sorted(using), "methodCalls": calls}

    def body_bytes(self, account_id: str) -> bytes:
        """:meth:`body` as the JSON bytes sent (UTF-8, compact: as httpx encodes ``json=``)."""
        return json.dumps(self.body(account_id), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def jmapc_body(account_id: str, request: Request) -> dict[str, Any]:
    """:meth:`Request.body` through jmapc alone (``APIRequest.from_calls``; its ``to_dict()`` would
    walk the encoded calls a second time, so the body is put together from its parts)."""
    api = APIRequest.from_calls(account_id, list(request.methods))
    return {
        "using": sorted(api.using | set(request.capabilities)),
        "methodCalls": [list(call) for call in api.method_calls],
    }


# ----------------------------------------------------------------------------- fast encoding
#
# jmapc encodes a method through dataclasses_json (``Model.to_dict``: ``_asdict`` with a deep copy
# of every leaf, then the class's overrides: camelCase keys, ``None`` left out, field encoders)
# and then rewrites back-references (``Ref`` -> ``"#name": {"name", "path", "resultOf"}``, moved
# last in their object) and lists of ``{"name", "value"}`` under ``headers`` (-> ``header:Name``).
# :func:`encode_calls` produces the same dicts for the values the gateway sends (JSON scalars, lists,
# dicts and ``Ref``s) from each class's overrides, read once; anything else (a nested jmapc model,
# a set, a datetime, a field encoder, a ``headers`` list) makes it give up, and jmapc encodes the
# request. tests/unit/test_jmap_request.py compares both encoders over every method the gateway
# builds and random JSON arguments.


class _Unsupported(Exception):
    """A value :func:`encode_calls` leaves to jmapc."""


_SCALARS = (str, int, float, bool, type(None))


@functools.cache
def _layout(cls: type) -> tuple[tuple[str, str, Callable[[Any], bool] | None], ...] | None:
    """``(attribute, JSON key, exclude)`` of each field of jmapc model ``cls``, or None when a field
    has an encoder (or anything else :func:`encode_calls` does not reproduce)."""
    overrides = _user_overrides_or_exts(cls)  # type: ignore[no-untyped-call]
    layout = []
    for f in dataclasses.fields(cls):
        o = overrides[f.name]
        if o.encoder is not None or o.mm_field is not None:
            return None
        key = o.letter_case(f.name) if o.letter_case is not None else f.name
        layout.append((f.name, key, o.exclude))
    return tuple(layout)


def _value(value: Any, refs: Callable[[Ref], dict[str, Any]] | None) -> Any:
    """``value`` as jmapc encodes it; ``refs`` resolves back-references (None inside a list, where
    jmapc does not rewrite them: there they are left to jmapc)."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict):
        return _object(value, refs)
    if isinstance(value, list | tuple):
        return [_value(item, None) for item in value]
    raise _Unsupported


def _object(items: dict[Any, Any], refs: Callable[[Ref], dict[str, Any]] | None) -> dict[str, Any]:
    """A dict argument as jmapc's postprocessing leaves it (back-references last, as ``#key``)."""
    out: dict[str, Any] = {}
    moved: list[tuple[str, dict[str, Any]]] = []
    for key, value in items.items():
        if not isinstance(key, str) or key == REF_SENTINEL_KEY:
            raise _Unsupported
        if isinstance(value, Ref):
            if refs is None or key.startswith("#"):
                raise _Unsupported
            moved.append(("#" + key, refs(value)))
        elif key == "headers" and isinstance(value, list):
            raise _Unsupported
        else:
            out[key] = _value(value, refs)
    for key, ref in moved:
        out[key] = ref
    return out


def encode_calls(account_id: str, methods: list[Method]) -> list[list[Any]] | None:
    """``methodCalls`` (RFC 8620 section 3.3) of ``methods`` as jmapc encodes them (call ids
    ``single.<name>`` / ``<i>.<name>``; ``accountId`` set on each method that has one, as jmapc's
    ``to_dict`` does); None when a method holds a value this encoder leaves to jmapc."""
    names = [m.jmap_method_name for m in methods]
    call_ids = [f"single.{names[0]}"] if len(methods) == 1 else [f"{i}.{n}" for i, n in enumerate(names)]
    calls: list[list[Any]] = []
    for index, method in enumerate(methods):
        layout = _layout(type(method))
        if layout is None:
            return None

        def ref(r: Ref, index: int = index) -> dict[str, Any]:
            # A bad index raises IndexError, as jmapc's; our Request.ref gives indexes only.
            method = r.method
            target = range(index)[method] if isinstance(method, int) else call_ids.index(method, 0, index)
            return {"name": names[target], "path": r.path, "resultOf": call_ids[target]}

        if account_id and hasattr(method, "account_id"):
            method.account_id = account_id
        try:
            args: dict[str, Any] = {}
            moved: list[tuple[str, dict[str, Any]]] = []
            for attribute, key, exclude in layout:
                value = getattr(method, attribute)
                if isinstance(value, Ref):
                    moved.append(("#" + key, ref(value)))
                    continue
                if exclude is not None and exclude(value):
                    continue
                if key == "headers" and isinstance(value, list):
                    raise _Unsupported
                args[key] = _value(value, ref)
            for key, reference in moved:
                args[key] = reference
        except _Unsupported:
            return None
        calls.append([names[index], args, call_ids[index]])
    return calls


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
