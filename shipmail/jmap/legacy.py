"""TEMPORARY (removed before the restructure lands): the old hand-built calls, so the tree runs
while call sites move to :class:`shipmail.jmap.request.Request`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jmapc.methods import Method

from shipmail.jmap.request import Request

URN_MAIL = "urn:ietf:params:jmap:mail"


class RawCall(Method):
    def __init__(self, name: str, arguments: dict[str, Any], using: Sequence[str] = (URN_MAIL,)) -> None:
        self.jmap_method = name
        self.arguments = arguments
        self.__dict__["using"] = set(using)

    def to_dict(self, *args: Any, account_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        data = dict(self.arguments)
        if account_id is not None:
            data.setdefault("accountId", account_id)
        return data


def call_ids(calls: Sequence[Method]) -> list[str]:
    if len(calls) == 1:
        return [f"single.{calls[0].jmap_method_name}"]
    return [f"{i}.{c.jmap_method_name}" for i, c in enumerate(calls)]


def as_request(calls: Request | Sequence[Method]) -> Request:
    if isinstance(calls, Request):
        return calls
    request = Request()
    for c in calls:
        request.add(c)
    return request
