"""Wire model of Shipmail's ``MailboxExport`` (``createMailboxExport``, ``getMailboxExport``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shipmail.exports.models import MailboxExport as ExportRow
from shipmail.http.schemas import Wire


class MailboxExport(Wire):
    """A ZIP snapshot of one mailbox (format: :mod:`shipmail.exports.archive`)."""

    object: Literal["mailbox_export"] = "mailbox_export"
    id: str = Field(pattern=r"^mbexp_[0-9a-z]{24}$")
    mailbox_id: str
    status: Literal["pending", "processing", "completed", "failed", "expired"]
    format: Literal["zip"] = "zip"
    format_version: int = Field(ge=1)
    file_size: int | None = Field(ge=0, description="Bytes of the finished ZIP.")
    message_count: int | None = Field(ge=0, description="Message files in the ZIP (one per folder holding it).")
    folder_count: int | None = Field(ge=0)
    messages_done: int = Field(ge=0, description="Messages written so far (progress while processing).")
    messages_total: int | None = Field(ge=0, description="Messages to write, known once processing starts.")
    error_code: Literal["source_unavailable", "snapshot_changed", "export_failed"] | None
    error: str | None = Field(description="Why the export failed; null unless failed.")
    download_url: str | None = Field(
        description="Completed exports: a private URL (no API key; Range supported) valid until "
        "download_url_expires_at, at most five minutes and never beyond expires_at."
    )
    download_url_expires_at: datetime | None
    expires_at: datetime | None = Field(description="When the file is deleted (seven days after completion).")
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, row: ExportRow, download_url: str | None = None, url_expires: datetime | None = None) -> MailboxExport:
        return cls(
            id=row.id,
            mailbox_id=row.mailbox_id,
            status=row.status,  # type: ignore[arg-type]
            format_version=row.format_version,
            file_size=row.file_size,
            message_count=row.message_count,
            folder_count=row.folder_count,
            messages_done=row.messages_done,
            messages_total=row.messages_total,
            error_code=row.error_code,  # type: ignore[arg-type]
            error=row.error,
            download_url=download_url,
            download_url_expires_at=url_expires,
            expires_at=row.expires_at,
            created_at=row.created_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
        )
