"""Cursor pages over tenant tables, shared by the list operations.

Shape of a page: ``(rows, next_cursor | None, has_more)``; the cursor is signed and bound to the
list and its filters (:mod:`shipmail.http.cursors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.db import repository
from shipmail.http.cursors import CursorCodec, invalid_cursor

T = TypeVar("T", bound=SQLModel)


async def cursor_page(
    session: AsyncSession,
    codec: CursorCodec,
    model: type[T],
    *,
    kind: str,
    binding: dict[str, Any],
    where: Sequence[Any],
    cursor: str | None,
    limit: int,
) -> tuple[list[T], str | None, bool]:
    """One page of ``model`` rows matching ``where``, in creation order."""
    after = None
    if cursor:
        pos = codec.decode(cursor, kind, binding)
        try:
            after = (datetime.fromisoformat(pos["t"]), str(pos["i"]))
        except (KeyError, TypeError, ValueError):
            raise invalid_cursor() from None
    rows, has_more = await repository.page(session, model, where=where, after=after, limit=limit)
    next_cursor = None
    if has_more and rows:
        last: Any = rows[-1]
        next_cursor = codec.encode(kind, binding, {"t": last.created_at.isoformat(), "i": last.id})
    return rows, next_cursor, has_more
