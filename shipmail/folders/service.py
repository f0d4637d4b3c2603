"""A mailbox's folders: JMAP Mailbox objects (RFC 8621 section 2) on Cyrus IMAP 3.6.

Source: Shipmail ``GET/POST /v1/mailboxes/{id}/folders`` and ``PATCH/DELETE
/v1/mailboxes/{id}/folders/{folder_id}``. A folder's public id is ``fld_`` + its JMAP Mailbox id
(:mod:`shipmail.jmap.ids`).

Costs in JMAP requests (RFC 8620 section 3): a listing is ONE ``Mailbox/get``. A create or an
update is one ``Mailbox/get`` (checks) plus one ``Mailbox/set`` + ``Mailbox/get``. A delete is one
``Mailbox/get``, then ``ceil(n / MOVE_BATCH) + 1`` requests moving the ``n`` messages of the folder
and its subfolders to Trash (``Email/set`` mailboxIds patches, each with the next ``Email/query`` +
``Email/get``), then one ``Mailbox/set`` destroy.

Rules enforced here rather than left to Cyrus, because Cyrus gets them wrong or answers
``serverFail`` (which would be a 500):

- names (:func:`check_name`): 1-100 characters after NFC normalisation (Cyrus stores names NFC,
  so ``e`` + U+0301 and ``é`` are the same name); no control characters (Unicode Cc), surrogates,
  line/paragraph separators or noncharacters; no leading/trailing white space; none of
  ``/ \\ " % * ; < > ` { | } ^ !`` (``/`` is the hierarchy separator; Cyrus refuses
  ``" % ; < > \\ ` { | }`` with serverFail; ``^`` is how Cyrus stores ``.`` internally, so ``a^b``
  collides with ``a.b`` and leaves a stray ``tmp_...`` folder; ``*`` and ``%`` are IMAP LIST
  wildcards; ``!`` separates the domain in Cyrus's internal names);
- the six system names (Inbox, Drafts, Sent, Trash, Junk, Archive, any case) are reserved at the
  root;
- the full internal name ``<domain>!user.<local>.<a>.<b>`` (each part in IMAP modified UTF-7,
  RFC 3501 section 5.1.3) must fit Cyrus's 490 bytes on create, 489 on a rename or move (for the
  folder and every subfolder);
- system folders (those with a role) are never renamed, moved or deleted (Cyrus lets the Inbox be
  renamed);
- a folder is never moved under itself or a descendant (Cyrus 3.6 answers serverFail for a move
  under itself and leaves duplicated folders behind);
- duplicates (same NFC name, case-sensitive as in Cyrus, under the same parent) are 409.

Deleting never loses mail: messages move to Trash first (each patch sets the Trash mailbox AND
removes the deleted folders: Cyrus deletes an email whose patch empties its ``mailboxIds``), and
folders are destroyed (children first, ``onDestroyRemoveEmails: false``) only once a query shows
them empty; if new mail arrives in between, Cyrus refuses with ``mailboxHasEmail`` and the move is
repeated. A delete that fails part-way has moved some messages to Trash and may have destroyed some
empty subfolders; repeating the DELETE completes it.
"""

from __future__ import annotations

import base64
import logging
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from jmapc.methods import EmailGet, EmailQuery, EmailSet, MailboxGet, MailboxSet
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.folders.schemas import Folder
from shipmail.http.errors import Conflict, InternalError, NotFound, ShipmailError, ValidationFailed, detail
from shipmail.jmap import ids
from shipmail.jmap import mailbox as jmap_mailbox
from shipmail.jmap.errors import from_jmap
from shipmail.jmap.request import Call, Request, Results
from shipmail.mailboxes.accounts import system_folders
from shipmail.mailboxes.models import Mailbox
from shipmail.rules.schemas import ensure_not_targeted
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.folders.service")

#: Names reserved at the root, compared case-insensitively (the system folders' names).
RESERVED_NAMES = frozenset({"inbox", "drafts", "sent", "trash", "junk", "archive"})
MAX_NAME_LENGTH = 100
#: Characters refused in a name (see the module docstring for why each one).
FORBIDDEN_CHARACTERS = frozenset('/\\"%*;<>`{|}^!')
#: Cyrus's MAX_MAILBOX_NAME: the longest internal name ``<domain>!user.<local>.<path>`` (bytes)
#: a create accepts. A rename or move must stay one byte shorter (measured on 3.6.1: both the
#: folder's and each subfolder's new name), else Cyrus answers serverFail.
CYRUS_MAX_MAILBOX_NAME = 490
CYRUS_MAX_RENAMED_NAME = 489
#: Messages moved to Trash per JMAP request when deleting (about 1.1 ms each on Cyrus 3.6, so a
#: batch stays far below the JMAP client's timeout).
MOVE_BATCH = 256
#: Folders destroyed per Mailbox/set (the server's maxObjectsInSet, RFC 8620 section 2).
MAX_OBJECTS_IN_SET = 4096
#: How often a delete re-moves mail that arrived while it ran before giving up with 409.
DESTROY_ATTEMPTS = 3


# --------------------------------------------------------------------------- pure rules


def _bad_character(ch: str) -> bool:
    if ch in FORBIDDEN_CHARACTERS:
        return True
    category = unicodedata.category(ch)
    if category in ("Cc", "Cs", "Zl", "Zp"):
        return True
    code = ord(ch)
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def check_name(name: str, field: str = "name") -> str:
    """The folder name to store (NFC), or 422 ``validation_error`` naming ``field``.

    Does not check reserved names (they are only reserved at the root: :func:`check_reserved`).
    """
    normal = unicodedata.normalize("NFC", name)
    if not normal or len(normal) > MAX_NAME_LENGTH:
        message = f"A folder name has 1 to {MAX_NAME_LENGTH} characters."
        raise ValidationFailed(message, details=[detail(field, "invalid_length", message)])
    if normal.strip() != normal:
        message = "A folder name must not begin or end with white space."
        raise ValidationFailed(message, details=[detail(field, "invalid_name", message)])
    bad = sorted({ch for ch in normal if _bad_character(ch)})
    if bad:
        shown = ", ".join(repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}" for ch in bad)
        message = f"A folder name must not contain {shown} (path separators, IMAP wildcards, control characters)."
        raise ValidationFailed(message, details=[detail(field, "invalid_name", message)])
    return normal


def check_reserved(name: str, parent_id: str | None, field: str = "name") -> None:
    """422 when ``name`` is a system folder's name (any case) at the root (``parent_id`` None)."""
    if parent_id is None and name.casefold() in RESERVED_NAMES:
        message = f"{name!r} is reserved for a system folder at the top level."
        raise ValidationFailed(message, details=[detail(field, "reserved_name", message)])


def modified_utf7(text: str) -> str:
    """``text`` in IMAP's modified UTF-7 (RFC 3501 section 5.1.3), as Cyrus stores names."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            raw = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def internal_name_length(address: str, path: Sequence[str]) -> int:
    """Length of Cyrus's internal name ``<domain>!user.<local>.<p1>.<p2>...`` for ``path``."""
    local, _, domain = address.rpartition("@")
    return len(domain) + 1 + len("user.") + len(local) + sum(1 + len(modified_utf7(p)) for p in path)


def tree_order(folders: Iterable[Folder]) -> list[Folder]:
    """Depth-first: each folder followed by its subfolders; siblings by (sort order, name).

    Cyrus's sort orders put the system folders first (Inbox 1, Archive 3, Drafts 4, Sent 5,
    Junk 6, Trash 7; custom folders 10). Folders whose parent is missing come last, as roots.
    """
    items = list(folders)
    known = {f.id for f in items}
    children: dict[str | None, list[Folder]] = {}
    for f in items:
        parent = f.parent_id if f.parent_id in known and f.parent_id != f.id else None
        children.setdefault(parent, []).append(f)
    for group in children.values():
        group.sort(key=lambda f: (f.sort_order, f.name.casefold(), f.name, f.id))
    seen: set[str] = set()
    out = _preorder(children, children.get(None, []), seen)
    for f in items:  # cycles (never from Cyrus): still listed once
        if f.id not in seen:
            seen.add(f.id)
            out.append(f)
    return out


def subtree(folders: Iterable[Folder], root_id: str) -> list[Folder]:
    """``root_id`` and all its descendants, parents before children (pre-order)."""
    by_parent: dict[str | None, list[Folder]] = {}
    by_id: dict[str, Folder] = {}
    for f in folders:
        by_id[f.id] = f
        by_parent.setdefault(f.parent_id, []).append(f)
    if root_id not in by_id:
        return []
    for group in by_parent.values():
        group.sort(key=lambda c: c.id)
    return _preorder(by_parent, [by_id[root_id]], set())


def _preorder(children: dict[str | None, list[Folder]], start: list[Folder], seen: set[str]) -> list[Folder]:
    """``start`` and their descendants depth-first, each folder before its ``children`` (in
    their list order); folders in ``seen`` are skipped, and every one visited is added to it."""
    out: list[Folder] = []
    stack = list(reversed(start))
    while stack:
        f = stack.pop()
        if f.id in seen:
            continue
        seen.add(f.id)
        out.append(f)
        stack.extend(reversed(children.get(f.id, [])))
    return out


def path_of(folders: dict[str, Folder], folder_id: str | None) -> list[str]:
    """Names from the root down to ``folder_id`` (empty for None)."""
    names: list[str] = []
    seen: set[str] = set()
    while folder_id is not None and folder_id in folders and folder_id not in seen:
        seen.add(folder_id)
        names.append(folders[folder_id].name)
        folder_id = folders[folder_id].parent_id
    return list(reversed(names))


def check_path_length(
    address: str,
    folders: dict[str, Folder],
    parent_id: str | None,
    name: str,
    moved: Sequence[Folder] = (),
    *,
    limit: int = CYRUS_MAX_MAILBOX_NAME,
) -> None:
    """422 when the folder ``name`` under ``parent_id`` (and, after a move or rename, each folder
    of ``moved``: the folder's subtree, root first) would exceed ``limit``, Cyrus's internal name
    length (:data:`CYRUS_MAX_MAILBOX_NAME` on create, :data:`CYRUS_MAX_RENAMED_NAME` otherwise)."""
    base = [*path_of(folders, parent_id), name]
    longest = internal_name_length(address, base)
    if moved:
        root = moved[0].id
        for f in moved[1:]:
            rel: list[str] = []
            cur: str | None = f.id
            while cur is not None and cur != root and cur in folders:
                rel.append(folders[cur].name)
                cur = folders[cur].parent_id
            longest = max(longest, internal_name_length(address, base + list(reversed(rel))))
    if longest > limit:
        message = "The folder path is too long for the mail server (nest less deeply or use shorter names)."
        raise ValidationFailed(message, details=[detail("name", "path_too_long", message)])


def check_duplicate(folders: Iterable[Folder], parent_id: str | None, name: str, exclude: str | None = None) -> None:
    """409 when another folder under ``parent_id`` already has ``name`` (NFC, case-sensitive)."""
    for f in folders:
        if f.parent_id == parent_id and f.id != exclude and unicodedata.normalize("NFC", f.name) == name:
            where = "at the top level" if parent_id is None else "in that parent folder"
            raise Conflict(f"A folder named {name!r} already exists {where}.")


# --------------------------------------------------------------------------- JMAP helpers


def _unknown_parent(wire_id: str | None) -> ValidationFailed:
    """422 naming ``parent_id``: the parent is part of the body, so an unknown one is invalid input."""
    message = f"No folder with id {wire_id!r} in this mailbox."
    return ValidationFailed(message, details=[detail("parent_id", "not_found", message)])


def _parent_jmap_id(wire_id: str) -> str:
    try:
        return ids.from_wire(ids.FOLDER, wire_id)
    except NotFound:
        raise _unknown_parent(wire_id) from None


def _folder_jmap_id(wire_id: str) -> str:
    return ids.from_wire(ids.FOLDER, wire_id)


async def _all(svc: Services, row: Mailbox, properties: list[str] = jmap_mailbox.PROPERTIES) -> list[Folder]:
    """Every folder of ``row`` (ONE JMAP request: Mailbox/get of all mailboxes, ``properties``)."""
    request = Request()
    call = request.add(MailboxGet(ids=None, properties=properties))
    listed = (await svc.jmap.call(row.address, request)).get(call, what="folder listing")["list"]
    return [Folder.of(m) for m in listed]


def _set_error(err: dict[str, Any], *, name: str, what: str) -> ShipmailError:
    """The API error for a Mailbox/set SetError, after our own checks passed."""
    kind = err.get("type")
    props = [str(p) for p in err.get("properties") or []]
    if kind == "invalidProperties" and "name" in props:
        # Every other name problem was refused before the write: Cyrus says this for duplicates.
        return Conflict(f"A folder named {name!r} already exists in that place.")
    if kind == "invalidProperties" and "parentId" in props:
        message = "The parent folder no longer exists or cannot hold this folder."
        return ValidationFailed(message, details=[detail("parent_id", "invalid_parent", message)])
    if kind == "serverFail" and "Invalid mailbox name" in str(err.get("description") or ""):
        message = "The mail server refused this folder name or path."
        return ValidationFailed(message, details=[detail("name", "invalid_name", message)])
    return from_jmap(err, what=what)


def _one(
    results: Results, written: Call, read: Call, key: str, *, name: str, what: str, section: str
) -> dict[str, Any]:
    """The folder ``key`` as ``read`` (Mailbox/get) returns it after ``written`` (Mailbox/set)
    ``section`` (``created``/``updated``) it; the mapped error when the write failed."""
    answer = results.get(written, what=what)
    failed = (answer.get(f"not{section.capitalize()}") or {}).get(key)
    if failed is not None:
        raise _set_error(failed, name=name, what=what)
    listed = results.get(read, what=what).get("list") or []
    if not listed:
        raise InternalError(f"The mail server did not return the folder after the {what}.")
    got: dict[str, Any] = listed[0]
    return got


def _find(folders: list[Folder], jmap_id: str, wire_id: str) -> Folder:
    for f in folders:
        if f.id == jmap_id:
            return f
    raise NotFound(f"No folder with id {wire_id!r}.")


# --------------------------------------------------------------------------- operations


async def list_folders(svc: Services, row: Mailbox) -> list[Folder]:
    """Every folder of ``row`` in :func:`tree_order` (ONE JMAP request: Mailbox/get)."""
    return tree_order(await _all(svc, row))


async def create_folder(svc: Services, row: Mailbox, name: str, parent_wire_id: str | None) -> Folder:
    """Create a custom folder ``name`` under ``parent_wire_id`` (None: at the root).

    422: invalid or reserved name, unknown parent (``parent_id``), path too long. 409: the name
    exists under that parent. Two JMAP requests (Mailbox/get; Mailbox/set + Mailbox/get of the
    created folder by its creation id).
    """
    name = check_name(name)
    parent = _parent_jmap_id(parent_wire_id) if parent_wire_id is not None else None
    check_reserved(name, parent)
    folders = await _all(svc, row, jmap_mailbox.TREE_PROPERTIES)
    by_id = {f.id: f for f in folders}
    if parent is not None and parent not in by_id:
        raise _unknown_parent(parent_wire_id)
    check_duplicate(folders, parent, name)
    check_path_length(row.address, by_id, parent, name)
    create: dict[str, Any] = {"f": {"name": name, "parentId": parent}}
    request = Request()
    written = request.add(MailboxSet(create=create))
    # "#f" names the folder created above (RFC 8620 sections 3.3 and 5.3, creation ids). A
    # back-reference to "/created/f/id" gives one id where Mailbox/get needs a list: Cyrus 3.6
    # answers invalidArguments (measured).
    read = request.add(MailboxGet(ids=["#f"], properties=jmap_mailbox.PROPERTIES))
    results = await svc.jmap.call(row.address, request)
    return Folder.of(_one(results, written, read, "f", name=name, what="folder create", section="created"))


async def update_folder(
    svc: Services,
    session: AsyncSession,
    row: Mailbox,
    folder_wire_id: str,
    *,
    name: str | None = None,
    move: bool = False,
    parent_wire_id: str | None = None,
) -> Folder:
    """Rename (``name``) and/or, with ``move``, move (``parent_wire_id``: a folder id, or None for
    the root) a custom folder. ``session`` is the request's (the system folders' ids are read from
    the row, :func:`shipmail.mailboxes.accounts.system_folders`).

    404: unknown folder. 409: a system folder, or the name exists at the destination. 422: invalid
    or reserved name, unknown parent, a move under itself or a descendant, path too long. Nothing
    is written when nothing changes. Two JMAP requests (Mailbox/get; Mailbox/set + Mailbox/get).
    """
    folder_id = _folder_jmap_id(folder_wire_id)
    new_name = check_name(name) if name is not None else None
    new_parent = _parent_jmap_id(parent_wire_id) if move and parent_wire_id is not None else None
    stored = await system_folders(svc, session, row)
    folders = await _all(svc, row)
    by_id = {f.id: f for f in folders}
    current = _find(folders, folder_id, folder_wire_id)
    if current.kind == "system" or current.id in stored.values():
        raise Conflict(f"{current.name!r} is a system folder: it cannot be renamed or moved.")
    target_name = new_name if new_name is not None else current.name
    target_parent = new_parent if move else current.parent_id
    moved = subtree(folders, current.id)
    if target_parent is not None:
        if target_parent not in by_id:
            raise _unknown_parent(parent_wire_id)
        if target_parent in {f.id for f in moved}:
            message = "A folder cannot be moved into itself or one of its subfolders."
            raise ValidationFailed(message, details=[detail("parent_id", "invalid_parent", message)])
    if target_name == current.name and target_parent == current.parent_id:
        return current
    check_reserved(target_name, target_parent, "name" if new_name is not None else "parent_id")
    check_duplicate(folders, target_parent, target_name, exclude=current.id)
    check_path_length(row.address, by_id, target_parent, target_name, moved, limit=CYRUS_MAX_RENAMED_NAME)
    patch: dict[str, Any] = {}
    if target_name != current.name:
        patch["name"] = target_name
    if target_parent != current.parent_id:
        patch["parentId"] = target_parent
    request = Request()
    written = request.add(MailboxSet(update={current.id: patch}))
    read = request.add(MailboxGet(ids=[current.id], properties=jmap_mailbox.PROPERTIES))
    results = await svc.jmap.call(row.address, request)
    return Folder.of(
        _one(results, written, read, current.id, name=target_name, what="folder update", section="updated")
    )


def _move_patches(emails: list[dict[str, Any]], doomed: set[str], trash: str) -> dict[str, dict[str, Any]]:
    """Email/set patches moving ``emails`` out of the ``doomed`` folders into ``trash``.

    Trash is always set in the same patch: Cyrus deletes an email whose patch empties its
    mailboxIds. Removing a mailbox needs ``null`` (``false`` is invalidProperties).
    """
    patches: dict[str, dict[str, Any]] = {}
    for e in emails:
        patch: dict[str, Any] = {
            f"mailboxIds/{m}": None for m, on in (e.get("mailboxIds") or {}).items() if on and m in doomed
        }
        if not patch:
            continue
        patch[f"mailboxIds/{trash}"] = True
        patches[str(e["id"])] = patch
    return patches


def _in_folders(doomed: Sequence[str]) -> dict[str, Any]:
    """The Email/query filter (RFC 8621 section 4.4.1) of messages in any of ``doomed``."""
    if len(doomed) == 1:
        return {"inMailbox": doomed[0]}
    return {"operator": "OR", "conditions": [{"inMailbox": m} for m in doomed]}


async def _move_to_trash(svc: Services, row: Mailbox, doomed: list[str], trash: str) -> int:
    """Move every message of the ``doomed`` folders to ``trash``, ``MOVE_BATCH`` at a time.

    Each request applies the previous batch's patches (Email/set), then asks for the next batch
    (Email/query + Email/get by back-reference); the query runs after the set, so moved messages
    are no longer found. Returns the number moved.
    """
    doomed_set = set(doomed)
    patches: dict[str, dict[str, Any]] = {}
    moved: set[str] = set()
    rounds = 0
    limit: int | None = None
    in_folders: Any = _in_folders(doomed)  # a raw filter dict: jmapc sends it as it is
    while True:
        request = Request()
        written = request.add(EmailSet(update=patches)) if patches else None
        query = request.add(EmailQuery(filter=in_folders, limit=MOVE_BATCH, calculate_total=True))
        listing = request.add(EmailGet(ids=request.ref(query, "/ids"), properties=["mailboxIds"]))
        results = await svc.jmap.call(row.address, request)
        if written is not None:
            answer = results.get(written, what="move to Trash")
            # An email destroyed meanwhile (notFound) is no longer in the folders either.
            failed = {
                k: v or {} for k, v in (answer.get("notUpdated") or {}).items() if (v or {}).get("type") != "notFound"
            }
            if failed:
                first = next(iter(failed.values()))
                logger.warning("moving %d message(s) to Trash failed: %s", len(failed), first.get("type"))
                raise from_jmap(first, what="move of the folder's messages to Trash")
            moved.update(patches)
        found = results.get(query, what="folder's message listing")
        if limit is None:
            # Enough rounds for every message once, plus a few for mail arriving meanwhile.
            limit = int(found.get("total") or 0) // MOVE_BATCH + 5
        emails = results.get(listing, what="folder's message listing").get("list") or []
        patches = _move_patches(emails, doomed_set, trash)
        if not patches:
            return len(moved)
        rounds += 1
        if rounds > limit:
            raise Conflict("Messages keep arriving in the folder; retry the delete.")


async def delete_folder(svc: Services, session: AsyncSession, row: Mailbox, folder_wire_id: str) -> None:
    """Move the messages of a custom folder and its subfolders to Trash, then destroy them.
    ``session`` is the request's (the system folders' ids are read from the row).

    404: unknown folder. 409: a system folder (or a subfolder with a role, or mail or subfolders
    that keep appearing), or an inbox rule that moves mail to the folder or a subfolder
    (:func:`shipmail.rules.schemas.ensure_not_targeted`, checked before anything changes). See
    the module docstring for the order of the steps and what a failure
    leaves behind.
    """
    folder_id = _folder_jmap_id(folder_wire_id)
    stored = await system_folders(svc, session, row)
    trash = stored["trash"]
    protected_ids = set(stored.values())
    for attempt in range(DESTROY_ATTEMPTS):
        folders = await _all(svc, row, jmap_mailbox.TREE_PROPERTIES)
        current = _find(folders, folder_id, folder_wire_id)
        if current.kind == "system" or current.id in protected_ids:
            raise Conflict(f"{current.name!r} is a system folder: it cannot be deleted.")
        doomed = subtree(folders, current.id)
        protected = [f for f in doomed if f.kind == "system" or f.id in protected_ids]
        if protected:
            raise Conflict(f"The folder holds the system folder {protected[0].name!r}: it cannot be deleted.")
        doomed_ids = [f.id for f in doomed]
        ensure_not_targeted(row.rules, doomed_ids)
        await _move_to_trash(svc, row, doomed_ids, trash)
        failed: dict[str, dict[str, Any]] = {}
        children_first = list(reversed(doomed_ids))
        for start in range(0, len(children_first), MAX_OBJECTS_IN_SET):
            request = Request()
            destroyed = request.add(
                MailboxSet(
                    destroy=children_first[start : start + MAX_OBJECTS_IN_SET],
                    on_destroy_remove_emails=False,
                )
            )
            answer = (await svc.jmap.call(row.address, request)).get(destroyed, what="folder delete")
            failed.update({k: v or {} for k, v in (answer.get("notDestroyed") or {}).items()})
        failed = {k: v for k, v in failed.items() if v.get("type") != "notFound"}
        if not failed:
            return
        if {str(v.get("type")) for v in failed.values()} <= {"mailboxHasEmail", "mailboxHasChild"}:
            # Mail (or a subfolder) arrived between the move and the destroy: go round again.
            logger.info("folder delete: new content appeared (attempt %d); moving it too", attempt + 1)
            continue
        raise from_jmap(next(iter(failed.values())), what="folder delete")
    raise Conflict("Messages or subfolders keep arriving in the folder; retry the delete.")
