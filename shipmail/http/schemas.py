"""Wire models shared by several resources (Shipmail's ``Error``, ``Pagination``, list queries)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Request(BaseModel):
    """Base of request bodies: unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """Base of query-parameter models: unknown parameters are ignored."""

    model_config = ConfigDict(extra="ignore")


class Wire(BaseModel):
    """Base of response bodies."""

    model_config = ConfigDict(from_attributes=True)


class ErrorDetail(Wire):
    field: str
    code: str | None = None
    message: str


class ErrorBody(Wire):
    type: Literal[
        "validation_error",
        "authentication_error",
        "authorization_error",
        "quota_exceeded",
        "over_limit",
        "not_found",
        "rate_limit_error",
        "conflict",
        "internal_error",
        "not_supported",
    ]
    message: str
    request_id: str
    details: list[ErrorDetail] = Field(default_factory=list)
    retry_after: int | None = Field(default=None, description="Seconds to wait (429 responses).")


class Error(Wire):
    """Shipmail's error envelope."""

    error: ErrorBody


class Pagination(Wire):
    next_cursor: str | None = Field(description="Cursor for the next page; null when there are no more results.")
    has_more: bool
    limit: int


class PageQuery(Query):
    cursor: str | None = Field(default=None, max_length=2048, description="Opaque cursor from the previous page.")
    limit: int = Field(default=25, ge=1, le=100, description="Items per page (1-100, default 25).")
