"""The ``mailbox_exports`` table: one export job of a mailbox and its finished file.

The file lives at ``<data dir>/exports/<id>.zip`` (:func:`shipmail.exports.service.file_path`);
while the job writes it, it is ``<id>.zip.partial`` and nothing else: a failed export removes the
partial file (fail-closed). ``status``: ``pending`` (queued) -> ``processing`` -> ``completed`` or
``failed``; a completed export turns ``expired`` (its file deleted) at ``expires_at``.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field

PENDING = "pending"
PROCESSING = "processing"
COMPLETED = "completed"
FAILED = "failed"
EXPIRED = "expired"
#: Statuses of an export still being made (a second create returns it).
ACTIVE = (PENDING, PROCESSING)


class MailboxExport(SQLModel, table=True):
    """One export of a mailbox (``mbexp_`` id)."""

    __tablename__ = "mailbox_exports"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(index=True, max_length=64)
    mailbox_id: str = Field(index=True, max_length=64)
    status: str = Field(default=PENDING, max_length=16, index=True)
    format_version: int = Field(default=1)
    file_size: int | None = Field(default=None)
    message_count: int | None = Field(default=None)
    folder_count: int | None = Field(default=None)
    messages_done: int = Field(default=0)
    messages_total: int | None = Field(default=None)
    #: ``source_unavailable`` (the mail server could not be read), ``export_failed`` (anything
    #: else), None unless failed.
    error_code: str | None = Field(default=None, max_length=32)
    #: Why it failed, for people (no secret, no message content).
    error: str | None = Field(default=None, max_length=500)
    expires_at: datetime | None = timestamp_field(nullable=True)
    created_at: datetime = timestamp_field()
    started_at: datetime | None = timestamp_field(nullable=True)
    completed_at: datetime | None = timestamp_field(nullable=True)
