"""Wire models of Shipmail's mailbox imports (``createMailboxImport``,
``createMailboxImportUpload``, ``listMailboxImports``, ``getMailboxImport``,
``cancelMailboxImport``, ``undoMailboxImport``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from shipmail.http.schemas import Request, Wire
from shipmail.imports.models import ImportFile as FileRow
from shipmail.imports.models import MailboxImport as ImportRow

#: Largest staged file (bytes): "Up to 4 GB per file".
MAX_FILE_BYTES = 4 * 1000**3
#: Staged files per import.
MAX_FILES = 20

ImapProvider = Literal[
    "gmail",
    "yahoo",
    "aol",
    "icloud",
    "fastmail",
    "zoho",
    "titan",
    "namecheap",
    "migadu",
    "gmx",
    "mail_com",
    "mailbox_org",
    "mxroute",
    "infomaniak",
    "ovh",
    "gandi",
    "imap",
]


class ImapSource(Request):
    type: Literal["imap"]
    provider: ImapProvider = Field(
        description="Only `imap` (with `host`) is served here; the named providers' servers are not "
        "preconfigured (422)."
    )
    email: str = Field(min_length=1, max_length=320, description="Login name on the source server.")
    password: str = Field(
        min_length=1,
        max_length=1024,
        description="App password, device password, or IMAP password. Encrypted at rest, used only "
        "for this import, and deleted when it finishes.",
    )
    host: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.-]+$", description="IMAP server host name."
    )
    port: int = Field(
        default=993, ge=1, le=65535, description="993 (TLS) by default; 143 or any other port: STARTTLS when offered."
    )


class FilesSource(Request):
    type: Literal["files"]
    provider: Literal["takeout", "proton", "tuta", "file"]
    file_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1,
        max_length=MAX_FILES,
        description="File IDs from POST /mailboxes/{id}/imports/files, uploaded first.",
    )


class ImportOptions(Request):
    folders: list[Annotated[str, Field(min_length=1, max_length=1000)]] | None = Field(
        default=None,
        max_length=1000,
        description="Source folder paths to import (`/` between names). Null: everything.",
    )
    range: Literal["all", "12m", "3m", "1m"] = Field(default="all", description="Only mail received in this period.")
    include_spam: bool = Field(default=False, description="Also import the source's Junk/Spam folder.")
    include_trash: bool = Field(default=False, description="Also import the source's Trash folder.")


class CreateMailboxImportRequest(Request):
    source: Annotated[ImapSource | FilesSource, Field(discriminator="type")]
    options: ImportOptions = Field(default_factory=ImportOptions)


class CreateImportUploadRequest(Request):
    file_name: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00-\x1f\x7f/\\]+$",
        description="Name of the export file (.mbox, .mbox.gz, .zip, or .eml).",
    )
    size_bytes: int = Field(ge=1, le=MAX_FILE_BYTES, description="File size in bytes. Up to 4 GB per file.")


class ImportUpload(Wire):
    object: Literal["import_upload"] = "import_upload"
    file_id: str
    upload_url: str = Field(description="Presigned URL. PUT the raw file bytes to this URL, then create the import.")
    expires_in_seconds: int


class ImportFileUploaded(Wire):
    """What a PUT to an upload URL answers."""

    object: Literal["import_file"] = "import_file"
    file_id: str
    file_name: str
    size_bytes: int
    state: Literal["uploaded"] = "uploaded"

    @classmethod
    def of(cls, row: FileRow) -> ImportFileUploaded:
        return cls(file_id=row.id, file_name=row.file_name, size_bytes=row.size_bytes)


class ImportCounts(Wire):
    found: int = 0
    imported: int = 0
    undone: int = 0
    duplicates_skipped: int = 0
    oversize_skipped: int = 0
    failed: int = 0
    contacts_imported: int = 0


class ImportBytes(Wire):
    total: int
    imported: int


class MailboxImportFolder(Wire):
    source_folder: str
    target_folder: str | None
    role: str | None
    state: Literal["pending", "importing", "completed", "failed"]
    found: int
    imported: int
    duplicates: int
    oversize: int
    failed: int


class ImportFailure(Wire):
    """A message that was skipped as malformed (at most the first 1,000 are listed)."""

    source_folder: str
    position: int = Field(description="The message's position in its source (0-based).")
    message_id: str | None
    reason: str


Status = Literal[
    "queued",
    "running",
    "paused_throttle",
    "paused_quota",
    "completed",
    "failed",
    "cancelled",
    "undo_queued",
    "undoing",
    "undone",
    "undo_failed",
]

Provider = Literal[
    "gmail",
    "outlook",
    "yahoo",
    "aol",
    "icloud",
    "fastmail",
    "zoho",
    "titan",
    "namecheap",
    "migadu",
    "gmx",
    "mail_com",
    "mailbox_org",
    "mxroute",
    "infomaniak",
    "ovh",
    "gandi",
    "imap",
    "takeout",
    "proton",
    "tuta",
    "file",
]


class MailboxImport(Wire):
    object: Literal["import"] = "import"
    id: str
    mailbox_id: str
    kind: Literal["imap", "file"]
    provider: Provider
    source_address: str | None
    status: Status
    status_detail: str | None
    error: str | None
    resume_at: datetime | None
    counts: ImportCounts
    bytes: ImportBytes
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    folders: list[MailboxImportFolder] | None = Field(
        default=None, description="Per-folder progress. Returned by getMailboxImport only."
    )
    failures: list[ImportFailure] | None = Field(
        default=None, description="Malformed messages skipped, with the reason. Returned by getMailboxImport only."
    )

    @classmethod
    def of(cls, row: ImportRow, *, detail: bool = False) -> MailboxImport:
        counts: dict[str, Any] = dict(row.counts or {})
        return cls(
            id=row.id,
            mailbox_id=row.mailbox_id,
            kind="imap" if row.kind == "imap" else "file",
            provider=row.provider,  # type: ignore[arg-type]
            source_address=row.source_address,
            status=row.status,  # type: ignore[arg-type]
            status_detail=row.status_detail,
            error=row.error,
            resume_at=None,
            counts=ImportCounts.model_validate(
                {k: int(v) for k, v in counts.items() if k in ImportCounts.model_fields}
            ),
            bytes=ImportBytes(total=row.bytes_total, imported=row.bytes_imported),
            created_at=row.created_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
            folders=[MailboxImportFolder.model_validate(f) for f in row.folders] if detail else None,
            failures=[ImportFailure.model_validate(f) for f in row.failures] if detail else None,
        )


class MailboxImportList(Wire):
    object: Literal["imports"] = "imports"
    mailbox_id: str
    data: list[MailboxImport]
