"""Wire models of Shipmail's ``/v1/mailboxes/{id}/folders`` (``listMailboxFolders``,
``createMailboxFolder``, ``updateMailboxFolder``, ``deleteMailboxFolder``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from shipmail.http.schemas import Request, Wire
from shipmail.jmap import ids


@dataclass(frozen=True)
class Folder:
    """One JMAP Mailbox as the API sees it; ``parent_id`` and ``id`` are JMAP ids."""

    id: str
    name: str
    parent_id: str | None
    role: str | None
    sort_order: int = 0
    total_emails: int = 0
    unread_emails: int = 0
    unread_threads: int = 0
    system: bool = False

    @property
    def kind(self) -> str:
        """``system`` for the special-use folders (anything with a role), else ``custom``."""
        return "system" if self.system or self.role is not None else "custom"

    @classmethod
    def of(cls, m: dict[str, Any], system_ids: Iterable[str] = ()) -> Folder:
        """From a Mailbox/get object (missing counts read as 0)."""
        role = m.get("role") or None
        return cls(
            id=str(m["id"]),
            name=str(m.get("name") or ""),
            parent_id=m.get("parentId") or None,
            role=str(role) if role is not None else None,
            sort_order=int(m.get("sortOrder") or 0),
            total_emails=int(m.get("totalEmails") or 0),
            unread_emails=int(m.get("unreadEmails") or 0),
            unread_threads=int(m.get("unreadThreads") or 0),
            system=str(m["id"]) in set(system_ids),
        )


_NAME_DESCRIPTION = (
    "Folder name, 1-100 characters (Unicode, stored NFC). Refused with 422: the system names Inbox, "
    "Drafts, Sent, Trash, Junk and Archive (any case) at the top level; path separators and other "
    'characters the mail server cannot store (/ \\ " % * ; < > ` { | } ^ !), control characters, '
    "leading or trailing white space."
)


def _string_only(schema: dict[str, Any]) -> None:
    """Document an optional-but-not-nullable field as a plain string (null is refused)."""
    schema.pop("default", None)
    branches = schema.pop("anyOf", None)
    if isinstance(branches, list):
        for branch in branches:
            if branch.get("type") == "string":
                schema.update(branch)


class CreateMailboxFolderRequest(Request):
    name: str = Field(min_length=1, max_length=100, description=_NAME_DESCRIPTION)
    parent_id: str | None = Field(
        default=None,
        max_length=300,
        description="Parent folder ID (fld_...) for a subfolder; null or absent for a top-level folder. "
        "An unknown parent is a 422 naming parent_id.",
    )


class UpdateMailboxFolderRequest(Request):
    """Send name to rename, parent_id to move (null: to the top level), or both (at least one)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description=_NAME_DESCRIPTION,
        json_schema_extra=_string_only,
    )
    parent_id: str | None = Field(
        default=None,
        max_length=300,
        description="New parent folder ID (fld_...), or null to move the folder to the top level. "
        "Not the folder itself or one of its subfolders (422).",
    )

    @model_validator(mode="after")
    def _name_not_null(self) -> UpdateMailboxFolderRequest:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null (leave it out to keep the name)")
        return self


class MailboxFolder(Wire):
    object: Literal["mailbox_folder"] = "mailbox_folder"
    id: str = Field(description="fld_ + the JMAP Mailbox id.")
    name: str
    parent_id: str | None = Field(description="Parent folder ID for subfolders, or null for a root folder.")
    role: str | None = Field(description="JMAP role of a system folder (inbox, drafts, sent, trash, junk, archive).")
    kind: Literal["custom", "system"]
    total_emails: int = Field(ge=0, description="Messages in the folder.")
    unread_emails: int = Field(ge=0, description="Messages in the folder without $seen.")
    unread_threads: int = Field(ge=0, description="Threads with at least one unread message in the folder.")
    sort_order: int = Field(description="The mail server's sort order (lower first; the list is already sorted).")

    @classmethod
    def of(cls, f: Folder) -> MailboxFolder:
        return cls(
            id=ids.to_wire(ids.FOLDER, f.id),
            name=f.name,
            parent_id=ids.to_wire(ids.FOLDER, f.parent_id) if f.parent_id else None,
            role=f.role,
            kind=f.kind,  # type: ignore[arg-type]
            total_emails=f.total_emails,
            unread_emails=f.unread_emails,
            unread_threads=f.unread_threads,
            sort_order=f.sort_order,
        )


class MailboxFolders(Wire):
    object: Literal["mailbox_folders"] = "mailbox_folders"
    mailbox_id: str
    address: str = Field(json_schema_extra={"format": "email"})
    data: list[MailboxFolder] = Field(
        description="Every folder, depth first: each folder followed by its subfolders; siblings by "
        "sort_order then name (system folders first)."
    )
