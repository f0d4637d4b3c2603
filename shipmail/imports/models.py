"""The import tables: ``mailbox_imports`` (one import and its progress), ``import_files`` (staged
uploads) and ``import_items`` (every message an import created, for undo).

``mailbox_imports.status``: ``queued`` -> ``running`` -> ``completed`` | ``failed`` |
``cancelled``; a finished import can be undone: ``undo_queued`` -> ``undoing`` -> ``undone`` |
``undo_failed``. ``cursor`` is where a run resumes (which file and message, or which IMAP folder
and UID); ``pending_blobs`` are the blob ids of the batch being imported when the row was last
written, so a run resumed after a crash recognises its own messages (see
:mod:`shipmail.imports.service`). ``secret`` is the IMAP source's password, encrypted
(:mod:`shipmail.imports.secrets`), and NULL once the import ends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
UNDO_QUEUED = "undo_queued"
UNDOING = "undoing"
UNDONE = "undone"
UNDO_FAILED = "undo_failed"
#: Statuses of an import that is under way (at most one per mailbox).
ACTIVE = (QUEUED, RUNNING)
#: Statuses from which an undo may start.
UNDOABLE = (COMPLETED, FAILED, CANCELLED, UNDO_FAILED)

#: ``import_files.state``: created, bytes not yet (fully) received.
FILE_PENDING = "pending"
#: All declared bytes received; usable by one import.
FILE_UPLOADED = "uploaded"
#: Taken by an import (deleted from disk when that import ends).
FILE_USED = "used"


class MailboxImport(SQLModel, table=True):
    """One import into a mailbox (``imp_`` id)."""

    __tablename__ = "mailbox_imports"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(index=True, max_length=64)
    mailbox_id: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=8)
    provider: str = Field(max_length=32)
    source_address: str | None = Field(default=None, max_length=320)
    status: str = Field(default=QUEUED, max_length=16, index=True)
    status_detail: str | None = Field(default=None, max_length=500)
    error: str | None = Field(default=None, max_length=500)
    #: {found, imported, undone, duplicates_skipped, oversize_skipped, failed}
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON(), nullable=False))
    bytes_total: int = Field(default=0)
    bytes_imported: int = Field(default=0)
    #: [MailboxImportFolder as JSON], in the order the folders were met.
    folders: list[Any] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    #: [{"folder", "position", "message_id", "reason"}] of skipped malformed messages (capped).
    failures: list[Any] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    #: JMAP Mailbox ids of the folders this import created (undo destroys them when empty).
    created_folders: list[Any] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    #: Staged file ids (files source), in order.
    file_ids: list[Any] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    #: CreateMailboxImportRequest.options as JSON.
    options: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON(), nullable=False))
    cursor: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON(), nullable=False))
    pending_blobs: list[Any] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    imap_host: str | None = Field(default=None, max_length=255)
    imap_port: int | None = Field(default=None)
    #: The IMAP password, Fernet-encrypted under a key derived from the service secret; NULL when done.
    secret: str | None = Field(default=None, max_length=2000)
    created_at: datetime = timestamp_field()
    started_at: datetime | None = timestamp_field(nullable=True)
    completed_at: datetime | None = timestamp_field(nullable=True)


class ImportFile(SQLModel, table=True):
    """A staged upload (``impf_`` id) at ``<data dir>/imports/<id>``."""

    __tablename__ = "import_files"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(index=True, max_length=64)
    mailbox_id: str = Field(index=True, max_length=64)
    file_name: str = Field(max_length=255)
    size_bytes: int
    state: str = Field(default=FILE_PENDING, max_length=16)
    import_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = timestamp_field()
    expires_at: datetime = timestamp_field()


class ImportItem(SQLModel, table=True):
    """A message an import created (JMAP Email id), destroyed by its undo."""

    __tablename__ = "import_items"

    id: int | None = Field(default=None, primary_key=True)
    import_id: str = Field(index=True, max_length=64)
    email_id: str = Field(max_length=255)
    blob_id: str = Field(max_length=255)
