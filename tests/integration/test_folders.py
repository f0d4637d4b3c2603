"""Folders end to end on the real Cyrus: ``/v1/mailboxes/{id}/folders`` (list, create, rename/move,
delete) with real mail delivered over LMTP, JMAP request counting, tenant and scope checks, and
the official SDK's folder methods."""

from __future__ import annotations

import importlib.util
import json
import sys
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from jmapc.methods import EmailGet, EmailQuery, EmailSet
from jmapc.methods.base import Method
from jmapc.models import EmailQueryFilterCondition

from shipmail.folders import service as folder_service
from shipmail.http.errors import ServiceUnavailable
from shipmail.jmap.request import Request
from tests.integration.conftest import ApiEnv, require

SYSTEM_ORDER = [
    ("Inbox", "inbox"),
    ("Archive", "archive"),
    ("Drafts", "drafts"),
    ("Sent", "sent"),
    ("Junk", "junk"),
    ("Trash", "trash"),
]


# --------------------------------------------------------------------------- helpers


def make_mailbox(
    api: ApiEnv, domain: str, local: str = "fold", key: str | None = None, display_name: str | None = None
) -> dict[str, Any]:
    """A mailbox on a fresh verified domain (``<domain>`` with a random label in front: the Cyrus
    instance lives for the whole session, the database for one test)."""
    dom = api.verified_domain(f"t{uuid.uuid4().hex[:10]}.{domain}", key)
    body: dict[str, Any] = {"domain_id": dom["id"], "address": local, "password": "CorrectHorse9"}
    if display_name is not None:
        body["display_name"] = display_name
    r = api.client.post("/v1/mailboxes", json=body, headers=api.auth(key))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def jmap(api: ApiEnv, address: str, method: Method) -> dict[str, Any]:
    """The response arguments of ONE method call made with the app's own client (test set-up only)."""
    svc = api.client.app.state.services  # type: ignore[attr-defined]
    request = Request()
    call = request.add(method)

    async def go() -> Any:
        return (await svc.jmap.call(address, request)).get(call)

    return api.client.portal.call(go)  # type: ignore[union-attr]


def requests(api: ApiEnv) -> int:
    api.recorded()  # a delivery's record job (after the 250) makes a JMAP request of its own
    return int(api.client.app.state.services.jmap.request_count)  # type: ignore[attr-defined]


def message(subject: str, *, msgid: str, reply_to: str | None = None) -> bytes:
    head = f"From: Ann <ann@example.org>\r\nTo: x@example.com\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\n"
    if reply_to:
        head += f"In-Reply-To: <{reply_to}>\r\nReferences: <{reply_to}>\r\n"
    return (head + "Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\nHello.\r\n").encode()


def deliver(api: ApiEnv, address: str, n: int, prefix: str) -> None:
    for i in range(n):
        assert api.lmtp(address, message(f"{prefix} {i}", msgid=f"{prefix}-{i}@example.org")) == {}


def email_ids(api: ApiEnv, address: str, jmap_folder: str) -> list[str]:
    out = jmap(api, address, EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=jmap_folder), limit=1000))
    return list(out["ids"])


def emails(api: ApiEnv, address: str, ids_: list[str]) -> dict[str, Any]:
    out = jmap(api, address, EmailGet(ids=ids_, properties=["mailboxIds", "keywords"]))
    assert out["notFound"] == []
    return {e["id"]: e for e in out["list"]}


def move(api: ApiEnv, address: str, ids_: list[str], src: str, dst: str, **extra: Any) -> None:
    patch = {f"mailboxIds/{src}": None, f"mailboxIds/{dst}": True, **extra}
    out = jmap(api, address, EmailSet(update={e: dict(patch) for e in ids_}))
    assert not out.get("notUpdated"), out


def jid(wire: str) -> str:
    assert wire.startswith("fld_")
    return wire[4:]


class Folders:
    """REST calls on one mailbox's folders."""

    def __init__(self, api: ApiEnv, mbx: dict[str, Any], key: str | None = None) -> None:
        self.api, self.mbx, self.key = api, mbx, key
        self.base = f"/v1/mailboxes/{mbx['id']}/folders"

    def list(self) -> list[dict[str, Any]]:
        r = self.api.client.get(self.base, headers=self.api.auth(self.key))
        assert r.status_code == 200, r.text
        return r.json()["data"]  # type: ignore[no-any-return]

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {f["name"]: f for f in self.list()}

    def role(self, role: str) -> dict[str, Any]:
        return next(f for f in self.list() if f["role"] == role)

    def create(self, name: str, parent_id: str | None = None, **kw: Any) -> Any:
        body: dict[str, Any] = {"name": name, **kw}
        if parent_id is not None:
            body["parent_id"] = parent_id
        return self.api.client.post(self.base, json=body, headers=self.api.auth(self.key))

    def made(self, name: str, parent_id: str | None = None) -> dict[str, Any]:
        r = self.create(name, parent_id)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def patch(self, folder_id: str, body: Any) -> Any:
        return self.api.client.patch(f"{self.base}/{folder_id}", json=body, headers=self.api.auth(self.key))

    def delete(self, folder_id: str) -> Any:
        return self.api.client.delete(f"{self.base}/{folder_id}", headers=self.api.auth(self.key))


@pytest.fixture
def box(api: ApiEnv) -> Iterator[Folders]:
    yield Folders(api, make_mailbox(api, "folders.example"))


def assert_error(r: Any, status: int, type_: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == type_, err
    if field is not None:
        assert field in [d["field"] for d in err["details"]], err


# --------------------------------------------------------------------------- the official SDK, in process

#: The official Python SDK (its package is also called ``shipmail``): the project's copy made by
#: scripts/setup, else the one the brief names. It is loaded under another module name; all its
#: imports are relative, and it takes an httpx transport, so its requests can go to the test app.
SDK_PACKAGES = [
    Path(__file__).resolve().parents[2] / ".venv-sdk" / "lib" / "python3.11" / "site-packages" / "shipmail",
    Path("/tmp/sdkvenv/lib/python3.11/site-packages/shipmail"),
]
SDK_MODULE = "shipmail_official_sdk"


class Sdk:
    """The loaded SDK: ``client(api)`` talks to the test app; ``record(fn)`` captures requests."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.error: type[Exception] = module.ShipmailError

    def client(self, api: ApiEnv, key: str | None = None) -> Any:
        import httpx

        test_client = api.client

        class Forward(httpx.BaseTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                skip = {"host", "content-length", "accept-encoding", "connection"}
                r = test_client.request(
                    request.method,
                    request.url.raw_path.decode(),
                    content=request.read(),
                    headers={k: v for k, v in request.headers.items() if k.lower() not in skip},
                )
                drop = {"content-length", "content-encoding", "transfer-encoding"}
                return httpx.Response(
                    r.status_code,
                    headers=[(k, v) for k, v in r.headers.items() if k.lower() not in drop],
                    content=r.content,
                )

        return self.module.Shipmail(
            key or api.key, base_url="http://testserver/v1", max_retries=0, timeout=30, transport=Forward()
        )

    def record(self, fn: Callable[[Any], Any]) -> list[tuple[str, str, bytes]]:
        """(method, path, body) of each request ``fn(client)`` makes; every answer is 200 ``{}``."""
        import httpx

        seen: list[tuple[str, str, bytes]] = []

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append((request.method, request.url.path, request.read()))
            return httpx.Response(
                204 if request.method == "DELETE" else 200, json=None if request.method == "DELETE" else {}
            )

        fn(
            self.module.Shipmail(
                "sk_test", base_url="http://sdk.invalid/v1", max_retries=0, transport=httpx.MockTransport(answer)
            )
        )
        return seen


def load_sdk() -> Sdk:
    module = sys.modules.get(SDK_MODULE)
    if module is None:
        package = next((p for p in SDK_PACKAGES if (p / "__init__.py").exists()), None)
        require(package is not None, "the official Shipmail SDK is not installed (.venv-sdk or /tmp/sdkvenv)")
        assert package is not None
        spec = importlib.util.spec_from_file_location(
            SDK_MODULE, package / "__init__.py", submodule_search_locations=[str(package)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[SDK_MODULE] = module
        spec.loader.exec_module(module)
    return Sdk(module)


# --------------------------------------------------------------------------- listing


def test_list_gives_system_folders_in_order_with_one_jmap_request(api: ApiEnv, box: Folders) -> None:
    box.list()  # warm-up: fetches the JMAP session
    before = requests(api)
    r = api.client.get(box.base, headers=api.auth())
    assert requests(api) - before == 1
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "mailbox_folders"
    assert body["mailbox_id"] == box.mbx["id"] and body["address"] == box.mbx["address"]
    assert [(f["name"], f["role"]) for f in body["data"]] == SYSTEM_ORDER
    for f in body["data"]:
        assert f["object"] == "mailbox_folder" and f["kind"] == "system" and f["parent_id"] is None
        assert f["id"].startswith("fld_")
        assert (f["total_emails"], f["unread_emails"], f["unread_threads"]) == (0, 0, 0)
        assert set(f) == {
            "object",
            "id",
            "name",
            "parent_id",
            "role",
            "kind",
            "total_emails",
            "unread_emails",
            "unread_threads",
            "sort_order",
        }
    assert [f["sort_order"] for f in body["data"]] == sorted(f["sort_order"] for f in body["data"])


def test_counts_and_unread_threads(api: ApiEnv, box: Folders) -> None:
    address = box.mbx["address"]
    api.lmtp(address, message("Plan", msgid="plan@example.org"))
    api.lmtp(address, message("Re: Plan", msgid="plan-re@example.org", reply_to="plan@example.org"))
    api.lmtp(address, message("Other", msgid="other@example.org"))
    inbox = box.role("inbox")
    assert (inbox["total_emails"], inbox["unread_emails"], inbox["unread_threads"]) == (3, 3, 2)

    # Reading one message of the two-message thread leaves that thread unread.
    ids_ = email_ids(api, address, jid(inbox["id"]))
    got = jmap(api, address, EmailGet(ids=ids_, properties=["subject"]))["list"]
    by_subject = {e["subject"]: e["id"] for e in got}
    jmap(api, address, EmailSet(update={by_subject["Plan"]: {"keywords/$seen": True}}))
    inbox = box.role("inbox")
    assert (inbox["total_emails"], inbox["unread_emails"], inbox["unread_threads"]) == (3, 2, 2)
    jmap(api, address, EmailSet(update={by_subject["Re: Plan"]: {"keywords/$seen": True}}))
    inbox = box.role("inbox")
    assert (inbox["total_emails"], inbox["unread_emails"], inbox["unread_threads"]) == (3, 1, 1)

    # Counts of a custom folder and its subfolder.
    work = box.made("Work")
    sub = box.made("Deep", work["id"])
    move(api, address, [by_subject["Other"]], jid(inbox["id"]), jid(sub["id"]))
    listed = box.by_name()
    assert (listed["Deep"]["total_emails"], listed["Deep"]["unread_emails"], listed["Deep"]["unread_threads"]) == (
        1,
        1,
        1,
    )
    assert listed["Work"]["total_emails"] == 0
    assert listed["Inbox"]["total_emails"] == 2


def test_tree_order_and_kinds(box: Folders) -> None:
    zeta = box.made("zeta")
    alpha = box.made("Alpha")
    child_b = box.made("b-child", alpha["id"])
    child_a = box.made("a-child", alpha["id"])
    grand = box.made("grand", child_b["id"])
    under_inbox = box.made("Receipts", box.role("inbox")["id"])
    listed = box.list()
    names = [f["name"] for f in listed]
    assert names == [
        "Inbox",
        "Receipts",
        "Archive",
        "Drafts",
        "Sent",
        "Junk",
        "Trash",
        "Alpha",
        "a-child",
        "b-child",
        "grand",
        "zeta",
    ]
    by_id = {f["id"]: f for f in listed}
    assert by_id[grand["id"]]["parent_id"] == child_b["id"]
    assert by_id[child_a["id"]]["parent_id"] == alpha["id"]
    assert by_id[under_inbox["id"]]["parent_id"] == box.role("inbox")["id"]
    assert by_id[zeta["id"]]["kind"] == "custom" and by_id[zeta["id"]]["role"] is None


# --------------------------------------------------------------------------- create


def test_create_root_and_subfolders(api: ApiEnv, box: Folders) -> None:
    box.list()
    before = requests(api)
    r = box.create("Projects")
    assert requests(api) - before == 2  # checks, then set + get
    assert r.status_code == 201, r.text
    projects = r.json()
    assert projects["object"] == "mailbox_folder" and projects["id"].startswith("fld_")
    assert (projects["name"], projects["parent_id"], projects["role"], projects["kind"]) == (
        "Projects",
        None,
        None,
        "custom",
    )
    assert (projects["total_emails"], projects["unread_emails"], projects["unread_threads"]) == (0, 0, 0)
    assert isinstance(projects["sort_order"], int)

    # parent_id null, absent and set; the SDK's CreateMailboxFolderParams always sends the key.
    explicit_null = api.client.post(box.base, json={"name": "Null parent", "parent_id": None}, headers=api.auth())
    assert explicit_null.status_code == 201 and explicit_null.json()["parent_id"] is None
    sub = box.made("2026", projects["id"])
    assert sub["parent_id"] == projects["id"]
    subsub = box.made("Q1", sub["id"])
    assert subsub["parent_id"] == sub["id"]

    # Reserved names are only reserved at the top level; Unicode names work and are stored NFC.
    assert box.made("Sent", projects["id"])["name"] == "Sent"
    assert box.made("Zürich 😀", None)["name"] == "Zürich 😀"
    decomposed = unicodedata.normalize("NFD", "Café")
    assert box.made(decomposed)["name"] == "Café"
    assert box.made("x" * 100)["name"] == "x" * 100
    listed = box.by_name()
    assert listed["Q1"]["parent_id"] == listed["2026"]["id"]
    assert listed["Café"]["name"] == unicodedata.normalize("NFC", "Café")


BAD_NAMES = [
    "Inbox",
    "inbox",
    "INBOX",
    "Drafts",
    "sent",
    "TRASH",
    "Junk",
    "archive",
    "a/b",
    "/",
    "a\\b",
    "a^b",
    "a%b",
    "a*b",
    "a!b",
    'a"b',
    "a;b",
    "a<b",
    "a>b",
    "a`b",
    "a{b",
    "a|b",
    "a}b",
    "tab\there",
    "new\nline",
    "nul\x00",
    "del\x7f",
    "c1\x85",
    "line\u2028sep",
    "non\uffffchar",
    " lead",
    "trail ",
    " ",
    "",
    "y" * 101,
]


def test_create_refuses_bad_names_with_422(api: ApiEnv, box: Folders) -> None:
    before = box.list()
    for name in BAD_NAMES:
        r = box.create(name)
        assert r.status_code == 422, (name, r.text)
        err = r.json()["error"]
        assert err["type"] == "validation_error" and "name" in [d["field"] for d in err["details"]], (name, err)
    assert box.list() == before


def test_create_refuses_surrogates_and_bad_json(api: ApiEnv, box: Folders) -> None:
    before = box.list()
    raw = b'{"name": "half \\ud800 surrogate"}'
    r = api.client.post(box.base, content=raw, headers={**api.auth(), "Content-Type": "application/json"})
    assert_error(r, 422, "validation_error", "name")
    r = api.client.post(box.base, json={"name": "ok", "extra": 1}, headers=api.auth())
    assert_error(r, 422, "validation_error")
    r = api.client.post(box.base, json={"parent_id": None}, headers=api.auth())
    assert_error(r, 422, "validation_error", "name")
    r = api.client.post(box.base, json={"name": 5}, headers=api.auth())
    assert_error(r, 422, "validation_error", "name")
    assert box.list() == before


def test_create_duplicates_and_parents(api: ApiEnv, box: Folders) -> None:
    work = box.made("Work")
    assert_error(box.create("Work"), 409, "conflict")
    assert_error(box.create(unicodedata.normalize("NFD", "Work")), 409, "conflict")
    cafe = box.made("Café")
    assert_error(box.create(unicodedata.normalize("NFD", "Café")), 409, "conflict")
    # Cyrus compares names case-sensitively: a different case is another folder.
    assert box.made("work")["name"] == "work"
    # The same name under another parent is fine; a duplicate there is not.
    box.made("Work", work["id"])
    assert_error(box.create("Work", work["id"]), 409, "conflict")
    # A system folder's name, duplicated at the top level, is refused as reserved (422).
    assert_error(box.create("Trash"), 422, "validation_error", "name")

    other = Folders(api, make_mailbox(api, "other-folders.example", "other"))
    foreign = other.made("Foreign")
    before = box.list()
    for parent in ("fld_doesnotexist", "garbage", "fld_", "fld_a/b", foreign["id"]):
        assert_error(box.create("Child", parent), 422, "validation_error", "parent_id")
    assert box.list() == before
    assert cafe["id"] in {f["id"] for f in before}


def test_create_refuses_paths_too_long_for_cyrus(box: Folders) -> None:
    # Cyrus keeps <domain>!user.<local>.<path> within 490 bytes; beyond it answers serverFail.
    parent = None
    address = box.mbx["address"]
    levels = 0
    path: list[str] = []
    while True:
        name = f"{levels}" * 100
        if folder_service.internal_name_length(address, [*path, name]) > folder_service.CYRUS_MAX_MAILBOX_NAME:
            break
        parent = box.made(name, parent)["id"]
        path.append(name)
        levels += 1
    assert levels >= 3
    before = box.list()
    assert_error(box.create(f"{levels}" * 100, parent), 422, "validation_error", "name")
    # The longest name that still fits is accepted (the rule matches Cyrus's limit exactly).
    room = folder_service.CYRUS_MAX_MAILBOX_NAME - folder_service.internal_name_length(address, path) - 1
    assert 0 < room < 100
    assert box.list() == before
    assert box.made("z" * room, parent)["name"] == "z" * room
    # Non-ASCII names take more room (modified UTF-7): 😀 costs far more than one byte.
    assert_error(box.create("😀" * (room // 2), parent), 422, "validation_error", "name")


# --------------------------------------------------------------------------- rename / move


def test_rename_and_move(api: ApiEnv, box: Folders) -> None:
    address = box.mbx["address"]
    deliver(api, address, 2, "keep")
    inbox = box.role("inbox")
    a = box.made("A")
    b = box.made("B", a["id"])
    c = box.made("C")
    move(api, address, email_ids(api, address, jid(inbox["id"])), jid(inbox["id"]), jid(b["id"]))

    box.list()
    before = requests(api)
    r = box.patch(a["id"], {"name": "A renamed"})
    assert requests(api) - before == 2
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["name"], r.json()["parent_id"]) == (a["id"], "A renamed", None)

    # Move B (with its mail) under C; then back to the top level with a new name.
    r = box.patch(b["id"], {"parent_id": c["id"]})
    assert r.status_code == 200, r.text
    assert (r.json()["parent_id"], r.json()["name"], r.json()["total_emails"]) == (c["id"], "B", 2)
    r = box.patch(b["id"], {"parent_id": None, "name": "B top"})
    assert r.status_code == 200, r.text
    assert (r.json()["parent_id"], r.json()["name"], r.json()["total_emails"]) == (None, "B top", 2)
    listed = box.by_name()
    assert listed["B top"]["parent_id"] is None and listed["B top"]["total_emails"] == 2
    assert "A renamed" in listed and "A" not in listed

    # Nothing to change: 200, no write.
    before = requests(api)
    r = box.patch(c["id"], {"name": "C", "parent_id": None})
    assert r.status_code == 200 and r.json()["name"] == "C"
    assert requests(api) - before == 1

    # "Inbox" is only reserved at the top level.
    r = box.patch(c["id"], {"name": "Inbox", "parent_id": a["id"]})
    assert r.status_code == 200, r.text
    assert_error(box.patch(c["id"], {"parent_id": None}), 422, "validation_error", "parent_id")
    r = box.patch(c["id"], {"name": "C again", "parent_id": None})
    assert r.status_code == 200, r.text


def test_rename_and_move_refusals_leave_everything_as_it_was(api: ApiEnv, box: Folders) -> None:
    a = box.made("A")
    b = box.made("B", a["id"])
    c = box.made("C", b["id"])
    box.made("Taken")
    box.made("Sibling", b["id"])
    before = box.list()
    # Into itself or a descendant: Cyrus 3.6 corrupts its folder list on a move under itself.
    assert_error(box.patch(a["id"], {"parent_id": a["id"]}), 422, "validation_error", "parent_id")
    assert_error(box.patch(a["id"], {"parent_id": c["id"]}), 422, "validation_error", "parent_id")
    assert_error(box.patch(b["id"], {"parent_id": c["id"]}), 422, "validation_error", "parent_id")
    # Duplicates at the destination.
    assert_error(box.patch(a["id"], {"name": "Taken"}), 409, "conflict")
    assert_error(box.patch(c["id"], {"name": "Sibling"}), 409, "conflict")
    assert_error(box.patch(c["id"], {"parent_id": None, "name": "Taken"}), 409, "conflict")
    # Reserved names at the top level, bad names, unknown parents, empty or invalid bodies.
    assert_error(box.patch(a["id"], {"name": "junk"}), 422, "validation_error", "name")
    assert_error(box.patch(a["id"], {"name": "a/b"}), 422, "validation_error", "name")
    assert_error(box.patch(a["id"], {"name": ""}), 422, "validation_error", "name")
    assert_error(box.patch(a["id"], {"name": None}), 422, "validation_error")
    assert_error(box.patch(a["id"], {"parent_id": "fld_nothere"}), 422, "validation_error", "parent_id")
    assert_error(box.patch(a["id"], {"parent_id": "nonsense"}), 422, "validation_error", "parent_id")
    assert_error(box.patch(a["id"], {}), 422, "validation_error")
    assert_error(box.patch(a["id"], {"colour": "red"}), 422, "validation_error")
    # A move that makes a subfolder's path too long for Cyrus (under A/B/C: 6 more bytes).
    path = ["L" * 100, "M" * 100, "N" * 100, "P" * 100]
    parent_id = None
    long_parent = ""
    for name in path:
        parent_id = box.made(name, parent_id)["id"]
        if name == path[0]:
            long_parent = parent_id
    room = folder_service.CYRUS_MAX_MAILBOX_NAME - folder_service.internal_name_length(box.mbx["address"], path) - 1
    leaf = box.made("O" * (room - 3), parent_id)
    settled = box.list()
    assert_error(box.patch(long_parent, {"parent_id": c["id"]}), 422, "validation_error", "name")
    assert_error(box.patch(leaf["id"], {"name": "O" * (room + 1)}), 422, "validation_error", "name")
    assert_error(box.patch(leaf["id"], {"name": "Q" * room}), 422, "validation_error", "name")  # 490: create only
    assert box.list() == settled
    r = box.patch(long_parent, {"parent_id": a["id"]})  # 2 more bytes: 489, the longest a move may make
    assert r.status_code == 200, r.text
    assert box.patch(long_parent, {"parent_id": None}).status_code == 200
    r = box.patch(leaf["id"], {"name": "Q" * (room - 1)})  # 489 again, by a rename
    assert r.status_code == 200, r.text
    assert [f for f in box.list() if f["id"] in {x["id"] for x in before}] == before


def test_system_folders_cannot_change(api: ApiEnv, box: Folders) -> None:
    work = box.made("Work")
    before = box.list()
    for f in [x for x in before if x["kind"] == "system"]:
        assert_error(box.patch(f["id"], {"name": f["name"] + " 2"}), 409, "conflict")
        assert_error(box.patch(f["id"], {"name": f["name"]}), 409, "conflict")
        assert_error(box.patch(f["id"], {"parent_id": work["id"]}), 409, "conflict")
        assert_error(box.delete(f["id"]), 409, "conflict")
    assert box.list() == before


def test_unknown_and_foreign_folder_ids_are_404(api: ApiEnv, box: Folders) -> None:
    other = Folders(api, make_mailbox(api, "foreign-folders.example", "other"))
    foreign = other.made("Theirs")
    foreign_inbox = other.role("inbox")
    for folder_id in ("fld_nothere", "nothere", "fld_", foreign["id"], foreign_inbox["id"], "fld_a.b"):
        assert_error(box.patch(folder_id, {"name": "X"}), 404, "not_found")
        assert_error(box.delete(folder_id), 404, "not_found")
    assert other.by_name()["Theirs"]["id"] == foreign["id"]


# --------------------------------------------------------------------------- delete


def test_delete_moves_mail_of_the_subtree_to_trash(api: ApiEnv, box: Folders) -> None:
    address = box.mbx["address"]
    deliver(api, address, 7, "tree")
    inbox, trash = box.role("inbox"), box.role("trash")
    all_ids = email_ids(api, address, jid(inbox["id"]))
    a = box.made("A")
    b = box.made("B", a["id"])
    c = box.made("C", b["id"])
    keep = box.made("Keep")
    move(api, address, all_ids[0:2], jid(inbox["id"]), jid(a["id"]), **{"keywords/$seen": True})
    move(api, address, all_ids[2:3], jid(inbox["id"]), jid(b["id"]), **{"keywords/$flagged": True})
    move(api, address, all_ids[3:5], jid(inbox["id"]), jid(c["id"]))
    move(api, address, all_ids[5:6], jid(inbox["id"]), jid(keep["id"]))
    # One message is in the Inbox AND in C: it stays in the Inbox and also lands in Trash.
    jmap(api, address, EmailSet(update={all_ids[6]: {f"mailboxIds/{jid(c['id'])}": True}}))

    box.list()
    before = requests(api)
    r = box.delete(a["id"])
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert requests(api) - before == 4  # folders; query; move + query (empty); destroy

    listed = box.by_name()
    assert {"A", "B", "C"}.isdisjoint(listed)
    assert listed["Keep"]["total_emails"] == 1
    assert listed["Trash"]["total_emails"] == 6
    assert listed["Inbox"]["total_emails"] == 1
    got = emails(api, address, all_ids)  # nothing lost
    trash_id = jid(trash["id"])
    for e in all_ids[0:5]:
        assert got[e]["mailboxIds"] == {trash_id: True}
    assert got[all_ids[0]]["keywords"].get("$seen") is True
    assert got[all_ids[2]]["keywords"].get("$flagged") is True
    assert got[all_ids[5]]["mailboxIds"] == {jid(keep["id"]): True}
    assert got[all_ids[6]]["mailboxIds"] == {jid(inbox["id"]): True, trash_id: True}


def test_delete_pages_through_large_folders(api: ApiEnv, box: Folders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder_service, "MOVE_BATCH", 3)
    address = box.mbx["address"]
    deliver(api, address, 8, "bulk")
    inbox = box.role("inbox")
    ids_ = email_ids(api, address, jid(inbox["id"]))
    big = box.made("Big")
    move(api, address, ids_, jid(inbox["id"]), jid(big["id"]))
    before = requests(api)
    assert box.delete(big["id"]).status_code == 204
    # folders; query (3); move 3 + query (3); move 3 + query (2); move 2 + query (0); destroy
    assert requests(api) - before == 6
    assert box.role("trash")["total_emails"] == 8
    assert set(emails(api, address, ids_)) == set(ids_)


def test_delete_of_an_empty_folder_and_request_count(api: ApiEnv, box: Folders) -> None:
    empty = box.made("Empty")
    box.list()
    before = requests(api)
    assert box.delete(empty["id"]).status_code == 204
    assert requests(api) - before == 3  # folders; query (empty); destroy
    assert "Empty" not in box.by_name()
    assert_error(box.delete(empty["id"]), 404, "not_found")


def test_failed_delete_loses_nothing_and_a_retry_completes(
    api: ApiEnv, box: Folders, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(folder_service, "MOVE_BATCH", 2)
    address = box.mbx["address"]
    deliver(api, address, 5, "fail")
    inbox = box.role("inbox")
    ids_ = email_ids(api, address, jid(inbox["id"]))
    parent = box.made("Parent")
    child = box.made("Child", parent["id"])
    move(api, address, ids_[:3], jid(inbox["id"]), jid(parent["id"]))
    move(api, address, ids_[3:], jid(inbox["id"]), jid(child["id"]))

    svc = api.client.app.state.services  # type: ignore[attr-defined]
    real_call = svc.jmap.call
    seen: list[str] = []

    async def flaky(address_: str, calls: list[Any]) -> Any:
        names = [c.jmap_method_name for c in calls]
        seen.append(",".join(names))
        if "Email/set" in names and len([s for s in seen if "Email/set" in s]) == 2:
            raise ServiceUnavailable("The mail server did not answer in time; retry shortly.")
        if "Mailbox/set" in names:
            raise ServiceUnavailable("The mail server did not answer in time; retry shortly.")
        return await real_call(address_, calls)

    monkeypatch.setattr(svc.jmap, "call", flaky)
    r = box.delete(parent["id"])
    assert_error(r, 503, "internal_error")
    monkeypatch.setattr(svc.jmap, "call", real_call)
    listed = box.by_name()
    assert {"Parent", "Child"} <= set(listed)  # nothing destroyed
    assert listed["Trash"]["total_emails"] == 2  # the first batch moved
    assert listed["Parent"]["total_emails"] + listed["Child"]["total_emails"] == 3
    assert set(emails(api, address, ids_)) == set(ids_)

    # The destroy step fails: every message is already in Trash, no folder is gone.
    monkeypatch.setattr(svc.jmap, "call", flaky)
    seen.clear()
    seen.append("Email/set")  # so the next Email/set is not the failing one
    seen.append("Email/set")
    seen.append("Email/set")
    assert_error(box.delete(parent["id"]), 503, "internal_error")
    monkeypatch.setattr(svc.jmap, "call", real_call)
    listed = box.by_name()
    assert {"Parent", "Child"} <= set(listed)
    assert listed["Trash"]["total_emails"] == 5

    assert box.delete(parent["id"]).status_code == 204
    listed = box.by_name()
    assert {"Parent", "Child"}.isdisjoint(listed)
    assert listed["Trash"]["total_emails"] == 5
    assert set(emails(api, address, ids_)) == set(ids_)


def test_delete_moves_mail_that_arrives_meanwhile(api: ApiEnv, box: Folders, monkeypatch: pytest.MonkeyPatch) -> None:
    address = box.mbx["address"]
    deliver(api, address, 2, "late")
    inbox = box.role("inbox")
    first, late = email_ids(api, address, jid(inbox["id"]))
    folder = box.made("Busy")
    move(api, address, [first], jid(inbox["id"]), jid(folder["id"]))

    svc = api.client.app.state.services  # type: ignore[attr-defined]
    real_move = folder_service._move_to_trash
    runs: list[int] = []

    async def move_then_mail_arrives(svc_: Any, row: Any, doomed: list[str], trash: str) -> int:
        moved = await real_move(svc_, row, doomed, trash)
        runs.append(moved)
        if len(runs) == 1:  # new mail lands in the folder before the destroy
            request = Request()
            request.add(
                EmailSet(
                    update={late: {f"mailboxIds/{jid(inbox['id'])}": None, f"mailboxIds/{jid(folder['id'])}": True}}
                )
            )
            await svc.jmap.call(address, request)
        return moved

    monkeypatch.setattr(folder_service, "_move_to_trash", move_then_mail_arrives)
    assert box.delete(folder["id"]).status_code == 204
    assert runs == [1, 1]
    got = emails(api, address, [first, late])
    trash = jid(box.role("trash")["id"])
    assert got[first]["mailboxIds"] == {trash: True} and got[late]["mailboxIds"] == {trash: True}
    assert "Busy" not in box.by_name()


# --------------------------------------------------------------------------- tenants, scopes


def test_other_organisations_and_scopes(api: ApiEnv, box: Folders) -> None:
    work = box.made("Work")
    stranger = api.new_key(org="stranger")
    for method, path, body in [
        ("GET", box.base, None),
        ("POST", box.base, {"name": "X"}),
        ("PATCH", f"{box.base}/{work['id']}", {"name": "Y"}),
        ("DELETE", f"{box.base}/{work['id']}", None),
        ("GET", "/v1/mailboxes/mbx_nothere/folders", None),
    ]:
        key = stranger if "mbx_nothere" not in path else None
        r = api.client.request(method, path, json=body, headers=api.auth(key))
        assert_error(r, 404, "not_found")
    reader = api.new_key(scopes=["mailboxes:read"])
    assert api.client.get(box.base, headers=api.auth(reader)).status_code == 200
    for method, path, body in [
        ("POST", box.base, {"name": "X"}),
        ("PATCH", f"{box.base}/{work['id']}", {"name": "Y"}),
        ("DELETE", f"{box.base}/{work['id']}", None),
    ]:
        assert_error(api.client.request(method, path, json=body, headers=api.auth(reader)), 403, "authorization_error")
    other_scope = api.new_key(scopes=["domains:read"])
    assert_error(api.client.get(box.base, headers=api.auth(other_scope)), 403, "authorization_error")
    assert box.by_name()["Work"]["id"] == work["id"]


# --------------------------------------------------------------------------- the official SDK


def test_sdk_folder_methods(api: ApiEnv, box: Folders) -> None:
    sdk = load_sdk()
    client = sdk.client(api)
    mbx = box.mbx["id"]
    listed = client.mailboxes.list_folders(mbx)
    assert listed["object"] == "mailbox_folders" and len(listed["data"]) == 6
    top = client.mailboxes.create_folder(mbx, {"name": "From SDK", "parent_id": None})
    assert top["name"] == "From SDK" and top["parent_id"] is None
    sub = client.mailboxes.create_folder(mbx, {"name": "Child", "parent_id": top["id"]})
    assert sub["parent_id"] == top["id"]
    renamed = client.mailboxes.update_folder(mbx, sub["id"], {"name": "Renamed"})
    assert renamed["name"] == "Renamed" and renamed["parent_id"] == top["id"]
    moved = client.mailboxes.update_folder(mbx, sub["id"], {"parent_id": None})  # move: our extension
    assert moved["parent_id"] is None
    assert client.mailboxes.delete_folder(mbx, top["id"]) is None
    names = [f["name"] for f in client.mailboxes.list_folders(mbx)["data"]]
    assert "From SDK" not in names and "Renamed" in names
    calls: list[tuple[Callable[[], Any], int]] = [
        (lambda: client.mailboxes.create_folder(mbx, {"name": "Inbox", "parent_id": None}), 422),
        (lambda: client.mailboxes.create_folder(mbx, {"name": "Renamed", "parent_id": None}), 409),
        (lambda: client.mailboxes.update_folder(mbx, box.role("inbox")["id"], {"name": "Post"}), 409),
        (lambda: client.mailboxes.delete_folder(mbx, "fld_nothere"), 404),
        (lambda: client.mailboxes.list_folders("mbx_nothere"), 404),
    ]
    for call, status in calls:
        with pytest.raises(sdk.error) as caught:
            call()
        assert getattr(caught.value, "status", None) == status


def test_sdk_paths_match_the_operations() -> None:
    from shipmail.folders import routes as folders
    from shipmail.identities import routes as identities

    sdk = load_sdk()
    recorded = sdk.record(
        lambda c: [
            c.mailboxes.list_folders("mbx_1"),
            c.mailboxes.create_folder("mbx_1", {"name": "N", "parent_id": None}),
            c.mailboxes.update_folder("mbx_1", "fld_2", {"name": "M"}),
            c.mailboxes.delete_folder("mbx_1", "fld_2"),
            c.mailboxes.list_identities("mbx_1"),
        ]
    )
    ops = {op.operation_id: op for op in [*folders.operations, *identities.operations]}
    expected = [
        ("GET", "/v1/mailboxes/mbx_1/folders", ops["listMailboxFolders"]),
        ("POST", "/v1/mailboxes/mbx_1/folders", ops["createMailboxFolder"]),
        ("PATCH", "/v1/mailboxes/mbx_1/folders/fld_2", ops["updateMailboxFolder"]),
        ("DELETE", "/v1/mailboxes/mbx_1/folders/fld_2", ops["deleteMailboxFolder"]),
        ("GET", "/v1/mailboxes/mbx_1/identities", ops["listMailboxIdentities"]),
    ]
    assert [(m, p) for m, p, _ in recorded] == [(m, p) for m, p, _ in expected]
    for (method, path, body), (_, _, op) in zip(recorded, expected, strict=False):
        assert op.method == method
        assert path == "/v1" + op.path.replace("{id}", "mbx_1").replace("{folder_id}", "fld_2")
        if op.body is not None:
            op.body.model_validate(json.loads(body))
