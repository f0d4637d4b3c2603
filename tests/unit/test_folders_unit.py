"""Pure logic of folders and identities: name rules, modified UTF-7 and Cyrus's name length, tree
order, subtrees, move patches, request models and identity ids (no mail server)."""

from __future__ import annotations

import unicodedata

import pydantic
import pytest

from shipmail.folders import service as f
from shipmail.folders.schemas import CreateMailboxFolderRequest, Folder, MailboxFolder, UpdateMailboxFolderRequest
from shipmail.http.errors import Conflict, NotFound, ValidationFailed
from shipmail.identities.service import identity_jmap_id, identity_wire_id


def folder(id_: str, name: str, parent: str | None = None, role: str | None = None, order: int = 10) -> Folder:
    return Folder(id=id_, name=name, parent_id=parent, role=role, sort_order=order)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    [
        "Work",
        "a.b",
        "2026",
        "Zürich",
        "😀 party",
        "a&b",
        "x@y",
        "(1) [2] #3 $4 +5 ~6 =7",
        "O'Brien",
        "a?b",
        "a,b:c",
        "x" * 100,
        "Inbox-old",
        "Sent items",
        "a\u200db",
    ],
)
def test_good_names_pass_unchanged(name: str) -> None:
    assert f.check_name(name) == name


def test_names_are_nfc() -> None:
    assert f.check_name(unicodedata.normalize("NFD", "Café")) == "Café"


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        " x",
        "x ",
        "\tx",
        "x" * 101,
        "a/b",
        "a\\b",
        'a"b',
        "a%b",
        "a*b",
        "a;b",
        "a<b",
        "a>b",
        "a`b",
        "a{b",
        "a|b",
        "a}b",
        "a^b",
        "a!b",
        "a\x00b",
        "a\x1fb",
        "a\x7fb",
        "a\x85b",
        "a\u2028b",
        "a\u2029b",
        "a\ud800b",
        "a\ufffeb",
        "a\uffffb",
        "a\ufdd0b",
        "a\U0001fffeb",
    ],
)
def test_bad_names_are_422_naming_the_field(name: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        f.check_name(name, field="name")
    assert caught.value.details[0]["field"] == "name"
    assert caught.value.status_code == 422


def test_reserved_names_only_at_the_root() -> None:
    for name in ["Inbox", "INBOX", "drafts", "Sent", "TRASH", "junk", "Archive"]:
        with pytest.raises(ValidationFailed):
            f.check_reserved(name, None)
        f.check_reserved(name, "parent")  # fine under a parent
    f.check_reserved("Inboxes", None)
    f.check_reserved("Spam", None)


def test_duplicates_are_409_case_sensitive() -> None:
    existing = [folder("1", "Work"), folder("2", "Café", "1")]
    with pytest.raises(Conflict):
        f.check_duplicate(existing, None, "Work")
    with pytest.raises(Conflict):
        f.check_duplicate(existing, "1", "Café")
    f.check_duplicate(existing, None, "work")
    f.check_duplicate(existing, "1", "Work")
    f.check_duplicate(existing, None, "Work", exclude="1")  # renaming a folder to its own name


# --------------------------------------------------------------------------- Cyrus's name length


@pytest.mark.parametrize(
    "text, encoded",
    [
        ("INBOX", "INBOX"),
        ("a&b", "a&-b"),
        ("Zürich", "Z&APw-rich"),
        ("é", "&AOk-"),
        ("😀", "&2D3eAA-"),
        ("台北", "&U,BTFw-"),  # RFC 3501 section 5.1.3's example
        ("日本語", "&ZeVnLIqe-"),
        ("a\u200bb", "a&IAs-b"),
    ],
)
def test_modified_utf7_matches_cyrus(text: str, encoded: str) -> None:
    # The expected values are the IMAP names Cyrus 3.6 listed for these JMAP names.
    assert f.modified_utf7(text) == encoded


def test_internal_name_length_matches_the_measured_limits() -> None:
    # Measured on Cyrus 3.6.1 for u2@x.example: 472 ASCII characters and 88 emoji at the root
    # were the longest accepted names (internal "x.example!user.u2.<name>" = 490).
    assert f.internal_name_length("u2@x.example", ["B" * 472]) == 490
    assert f.internal_name_length("u2@x.example", ["😀" * 88]) == 490
    assert f.internal_name_length("u2@x.example", ["😀" * 89]) > 490
    # Nested: 200 + 271 under the same account was accepted too.
    assert f.internal_name_length("u6@x.example", ["A" * 200, "B" * 271]) == 490


def test_check_path_length_for_create_and_move() -> None:
    address = "u@x.example"  # prefix "x.example!user.u" = 16
    tree = {
        x.id: x
        for x in [
            folder("p", "P" * 200),
            folder("c", "C" * 100, "p"),
            folder("m", "M" * 10),
            folder("mc", "K" * 200, "m"),
        ]
    }
    f.check_path_length(address, tree, "p", "N" * 272)  # 16 + 201 + 273 = 490
    with pytest.raises(ValidationFailed):
        f.check_path_length(address, tree, "p", "N" * 273)
    # Moving m (with its 200-character child) under p: 16 + 201 + 11 + 201 = 429 fits...
    moved = f.subtree(tree.values(), "m")
    f.check_path_length(address, tree, "p", "M" * 10, moved, limit=f.CYRUS_MAX_RENAMED_NAME)
    # ...renaming m to 70 characters there makes the child 489: the longest a rename may make.
    f.check_path_length(address, tree, "p", "M" * 70, moved, limit=f.CYRUS_MAX_RENAMED_NAME)
    with pytest.raises(ValidationFailed):
        f.check_path_length(address, tree, "p", "M" * 71, moved, limit=f.CYRUS_MAX_RENAMED_NAME)


# --------------------------------------------------------------------------- trees


def test_tree_order_depth_first_with_system_folders_first() -> None:
    items = [
        folder("t", "Trash", role="trash", order=7),
        folder("z", "zeta"),
        folder("i", "Inbox", role="inbox", order=1),
        folder("a", "Alpha"),
        folder("ab", "b", "a"),
        folder("aa", "A", "a"),
        folder("aba", "deep", "ab"),
        folder("ar", "Archive", role="archive", order=3),
        folder("ir", "Receipts", "i"),
        folder("orphan", "Orphan", "gone"),
    ]
    assert [x.name for x in f.tree_order(items)] == [
        "Inbox",
        "Receipts",
        "Archive",
        "Trash",
        "Alpha",
        "A",
        "b",
        "deep",
        "Orphan",
        "zeta",
    ]


def test_tree_order_survives_cycles() -> None:
    items = [folder("a", "A", "b"), folder("b", "B", "a"), folder("c", "C")]
    assert sorted(x.id for x in f.tree_order(items)) == ["a", "b", "c"]


def test_subtree_parents_first() -> None:
    items = [folder("a", "A"), folder("b", "B", "a"), folder("c", "C", "b"), folder("d", "D", "a"), folder("x", "X")]
    ids = [x.id for x in f.subtree(items, "a")]
    assert set(ids) == {"a", "b", "c", "d"} and ids[0] == "a"
    assert ids.index("b") < ids.index("c")
    assert f.subtree(items, "missing") == []
    assert [x.id for x in f.subtree(items, "c")] == ["c"]


def test_path_of() -> None:
    tree = {x.id: x for x in [folder("a", "A"), folder("b", "B", "a"), folder("c", "C", "b")]}
    assert f.path_of(tree, "c") == ["A", "B", "C"]
    assert f.path_of(tree, None) == []


def test_kind_and_decoding_defaults() -> None:
    assert Folder.of({"id": "x", "name": "N"}).kind == "custom"
    assert Folder.of({"id": "x", "name": "Inbox", "role": "inbox"}).kind == "system"
    assert Folder.of({"id": "x", "name": "N"}, system_ids=["x"]).kind == "system"
    decoded = Folder.of(
        {
            "id": "x",
            "name": "N",
            "parentId": "p",
            "sortOrder": 10,
            "totalEmails": 3,
            "unreadEmails": 2,
            "unreadThreads": 1,
        }
    )
    wire = MailboxFolder.of(decoded)
    assert (wire.id, wire.parent_id, wire.total_emails, wire.unread_emails, wire.unread_threads) == (
        "fld_x",
        "fld_p",
        3,
        2,
        1,
    )


# --------------------------------------------------------------------------- moving mail out


def test_move_patches_never_empty_mailbox_ids() -> None:
    emails = [
        {"id": "e1", "mailboxIds": {"A": True}},
        {"id": "e2", "mailboxIds": {"A": True, "B": True}},
        {"id": "e3", "mailboxIds": {"A": True, "INBOX": True}},
        {"id": "e4", "mailboxIds": {"INBOX": True}},
    ]
    patches = f._move_patches(emails, {"A", "B"}, "TRASH")
    assert patches == {
        "e1": {"mailboxIds/A": None, "mailboxIds/TRASH": True},
        "e2": {"mailboxIds/A": None, "mailboxIds/B": None, "mailboxIds/TRASH": True},
        "e3": {"mailboxIds/A": None, "mailboxIds/TRASH": True},
    }
    for patch in patches.values():  # removal is null (false is invalidProperties on Cyrus)
        assert all(v is None for k, v in patch.items() if k != "mailboxIds/TRASH")


def test_in_folders_filter() -> None:
    assert f._in_folders(["a"]) == {"inMailbox": "a"}
    assert f._in_folders(["a", "b"]) == {"operator": "OR", "conditions": [{"inMailbox": "a"}, {"inMailbox": "b"}]}


def test_set_errors_map_to_api_errors() -> None:
    assert isinstance(f._set_error({"type": "invalidProperties", "properties": ["name"]}, name="X", what="w"), Conflict)
    parent = f._set_error({"type": "invalidProperties", "properties": ["parentId"]}, name="X", what="w")
    assert isinstance(parent, ValidationFailed) and parent.details[0]["field"] == "parent_id"
    bad = f._set_error({"type": "serverFail", "description": "Invalid mailbox name"}, name="X", what="w")
    assert isinstance(bad, ValidationFailed)
    assert f._set_error({"type": "serverFail"}, name="X", what="w").status_code == 500
    assert f._set_error({"type": "forbidden"}, name="X", what="w").status_code == 409


# --------------------------------------------------------------------------- request models and ids


def test_create_request_accepts_absent_or_null_parent() -> None:
    assert CreateMailboxFolderRequest.model_validate({"name": "A"}).parent_id is None
    assert CreateMailboxFolderRequest.model_validate({"name": "A", "parent_id": None}).parent_id is None
    with pytest.raises(pydantic.ValidationError):
        CreateMailboxFolderRequest.model_validate({"name": "A", "colour": 1})
    with pytest.raises(pydantic.ValidationError):
        CreateMailboxFolderRequest.model_validate({"name": ""})


def test_update_request_fields() -> None:
    moved = UpdateMailboxFolderRequest.model_validate({"parent_id": None})
    assert moved.model_fields_set == {"parent_id"} and moved.parent_id is None
    assert UpdateMailboxFolderRequest.model_validate({"name": "N"}).model_fields_set == {"name"}
    with pytest.raises(pydantic.ValidationError):
        UpdateMailboxFolderRequest.model_validate({"name": None})
    schema = UpdateMailboxFolderRequest.model_json_schema()
    assert schema["properties"]["name"]["type"] == "string" and "default" not in schema["properties"]["name"]
    assert schema["minProperties"] == 1 and "required" not in schema


def test_folder_ids_parse() -> None:
    assert f._folder_jmap_id("fld_abc") == "abc"
    with pytest.raises(NotFound):
        f._folder_jmap_id("abc")
    with pytest.raises(ValidationFailed) as caught:
        f._parent_jmap_id("fld_a/b")
    assert caught.value.details[0]["field"] == "parent_id"


@pytest.mark.parametrize("jmap_id", ["u1@x.example", "Ia1b2", "a" * 255, "é"])
def test_identity_ids_round_trip(jmap_id: str) -> None:
    wire = identity_wire_id(jmap_id)
    assert wire.startswith("idn_") and "=" not in wire
    assert identity_jmap_id(wire) == jmap_id


@pytest.mark.parametrize("wire", ["", "idn_", "fld_abc", "idn_!!!", "idn_" + "A" * 500, "idn_/w"])
def test_bad_identity_ids_are_404(wire: str) -> None:
    with pytest.raises(NotFound):
        identity_jmap_id(wire)
