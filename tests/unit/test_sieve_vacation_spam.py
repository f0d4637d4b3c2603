"""Auto-reply (Sieve ``vacation``) and spam threshold: the generated Sieve, the stored settings,
and the two PATCH operations against the fake mail server (the real Cyrus is in
tests/integration/test_auto_reply.py and test_spam.py)."""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sievelib import commands, tools
from sievelib.parser import Parser
from starlette.testclient import TestClient

from shipmail.app import create_app
from shipmail.config import Settings
from shipmail.delivery.script import ScriptOptions, build_script
from shipmail.http.errors import ValidationFailed
from shipmail.mailboxes.models import Mailbox
from shipmail.mailserver.base import DeliverySieve, SieveTest
from shipmail.mailserver.cyrus_config import (
    SIEVE_MAX_SCRIPT_KB,
    VACATION_MIN_RESPONSE_SECONDS,
    CyrusLayout,
    render_imapd_conf,
)
from shipmail.settings.schemas import AutoReply
from shipmail.settings.service import normalize_auto_reply
from shipmail.settings.sieve import (
    AUTO_REPLY_DAYS,
    LIST_HEADERS,
    UnsafeText,
    body_problem,
    integer_at_least,
    iso8601_key,
    score_pattern,
    subject_problem,
)
from shipmail.sieve import extensions
from tests.fakes import FakeJmap, FakeMailServer
from tests.unit.conftest import auth, make_key, run_db

CYRUS = DeliverySieve(has_attachment=SieveTest("jmapquery", "vnd.cyrus.jmapquery", '{"hasAttachment":true}'))
assert CYRUS.has_attachment is not None
extensions.register_test(CYRUS.has_attachment)
ADDRESS = "hello@example.com"


def parse(script: str) -> list[commands.Command]:
    parser = Parser()
    assert parser.parse(script), parser.error
    return list(parser.result)


def script_for(*, spam: int | None = None, auto_reply: AutoReply | None = None, address: str = ADDRESS) -> str:
    return build_script(ScriptOptions(server=CYRUS, address=address, spam_threshold=spam, auto_reply=auto_reply))


def on(body: str, **kw: Any) -> AutoReply:
    """An enabled auto-reply."""
    return AutoReply(enabled=True, body=body, **kw)


def requires(tree: list[commands.Command]) -> set[str]:
    return set(tools.unquote_arg(tree[0]["capabilities"]))


def find(tree: list[commands.Command], name: str) -> list[commands.Command]:
    return [node for top in tree for node in top.walk() if node.name == name]


# --------------------------------------------------------------------------- spam


def _posix_to_python(pattern: str) -> re.Pattern[str]:
    """The expressions use only ``^ $ [..] ( | ) * {m,n}``, read alike by POSIX ERE and ``re``;
    ``\\Z`` instead of ``$`` (``re``'s ``$`` also matches before a final newline)."""
    assert "\\" not in pattern
    return re.compile(pattern.replace("$", r"\Z"))


@pytest.mark.parametrize("threshold", [0, 1, 5, 9, 10, 14, 19, 20, 99, 100, 101, 250])
def test_integer_at_least_is_exact(threshold: int) -> None:
    rx = _posix_to_python(f"^{integer_at_least(threshold)}$")
    for n in range(0, 3000):
        assert bool(rx.match(str(n))) == (n >= threshold), (threshold, n)
    assert not rx.match("")


@pytest.mark.parametrize(
    "value,threshold,spam",
    [
        ("5.3", 5, True),
        ("5", 5, True),
        ("5.0", 5, True),
        ("5.", 5, True),
        ("4.99999", 5, False),
        ("4.9", 5, False),
        ("14.0", 5, True),
        ("50", 5, True),
        ("0005.0", 5, True),
        ("+6", 5, True),
        ("99999999999999999999", 14, True),
        ("-1.2", 1, False),
        ("-7", 5, False),
        ("-0", 1, False),
        ("0", 1, False),
        ("0.99", 1, False),
        ("1.0", 1, True),
        ("abc", 1, False),
        ("", 1, False),
        ("5abc", 5, False),
        ("1e3", 5, False),
        (".9", 1, False),
        ("5,3", 5, False),
        ("13.99", 14, False),
        ("14", 14, True),
        ("5.3 (required 5.0)", 5, False),
        (" ", 1, False),
    ],
)
def test_score_pattern(value: str, threshold: int, spam: bool) -> None:
    assert bool(_posix_to_python(score_pattern(threshold)).match(value)) is spam


def test_spam_rule_files_into_junk_and_stops() -> None:
    tree = parse(script_for(spam=7))
    assert {"regex", "fileinto"} <= requires(tree)
    (rule,) = [c for c in tree if isinstance(c, commands.IfCommand) and c["test"].name == "header"]
    test = rule["test"]
    assert test["match-type"] == ":regex"
    assert tools.unquote(test["header-names"]) == "X-Spam-Score"
    assert tools.unquote(test["key-list"]) == score_pattern(7)
    assert [c.name for c in rule.children] == ["fileinto", "stop"]
    assert tools.unquote(rule.children[0]["mailbox"]) == "Junk"
    # No ascii-numeric comparator: it ranks "-1.2" and garbage as +infinity.
    assert "ascii-numeric" not in script_for(spam=7)


def test_order_is_attachment_spam_auto_reply() -> None:
    script = script_for(spam=5, auto_reply=on("away"))
    names = re.findall(r"^# Filter: (.+)$", script, re.M)
    assert names == ["has-attachment", "spam-threshold", "auto-reply"]


def test_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        script_for(spam=0)


# --------------------------------------------------------------------------- vacation


def vacation_of(script: str) -> commands.Command:
    (vac,) = find(parse(script), "vacation")
    return vac


def reply_text(vac: commands.Command) -> str:
    """The text the reply carries: the ``:mime`` part decoded (line breaks as LF)."""
    assert vac.arguments.get("mime") == ":mime"
    part = email.message_from_string(tools.unquote(vac["reason"]), policy=email.policy.default)
    assert part.get_content_type() == "text/plain" and part.get_content_charset() == "utf-8"
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    raw = part.get_payload(decode=True)
    assert isinstance(raw, bytes)
    return raw.decode("utf-8").replace("\r\n", "\n")


def lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def test_vacation_defaults_and_rfc3834_checks() -> None:
    script = script_for(auto_reply=on("Away."))
    tree = parse(script)
    assert "vacation" in requires(tree) and "date" not in requires(tree) and "variables" not in requires(tree)
    vac = vacation_of(script)
    assert vac.extra_arguments["days"] == str(AUTO_REPLY_DAYS)
    assert "subject" not in vac.arguments  # RFC 5230 default: "Auto: <subject>"
    assert tools.unquote(vac.extra_arguments["from"]) == "hello@example.com"
    assert tools.unquote_arg(vac.extra_arguments["addresses"]) == ["hello@example.com"]
    assert reply_text(vac) == "Away."
    exists = {tools.unquote(e["header-names"]) for e in find(tree, "exists")}
    assert set(LIST_HEADERS) | {"Auto-Submitted"} <= exists
    headers = {tools.unquote(h["header-names"]): tools.unquote_arg(h["key-list"]) for h in find(tree, "header")}
    assert headers["Precedence"] == ["bulk", "list", "junk"]
    assert headers["Auto-Submitted"] == "no"
    assert not find(tree, "currentdate")


def test_vacation_window_uses_utc_iso8601_keys() -> None:
    ar = on(
        "x",
        subject="Away",
        from_date=datetime(2026, 12, 20, 9, 30, 15, 999, tzinfo=timezone(timedelta(hours=2))),
        to_date=datetime(2027, 1, 4),
    )
    script = script_for(auto_reply=ar)
    tree = parse(script)
    assert {"vacation", "date", "relational"} <= requires(tree)
    dates = [c.args_as_tuple() for c in find(tree, "currentdate")]
    assert dates == [
        ("currentdate", ":zone", "+0000", ":value", "ge", "iso8601", "2026-12-20T07:30:15"),
        ("currentdate", ":zone", "+0000", ":value", "lt", "iso8601", "2027-01-04T00:00:00"),
    ]
    assert tools.unquote(vacation_of(script).extra_arguments["subject"]) == "Away"


@pytest.mark.parametrize(
    "moment,key",
    [
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05"),
        (datetime(2026, 1, 2, 3, 4, 5, 900000, tzinfo=UTC), "2026-01-02T03:04:05"),
        (datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), "2025-12-31T23:30:00"),
        (datetime(5, 1, 1), "0005-01-01T00:00:00"),
    ],
)
def test_iso8601_key_is_fixed_width_utc(moment: datetime, key: str) -> None:
    assert iso8601_key(moment) == key
    assert len(key) == 19


@pytest.mark.parametrize(
    "subject", ["a\nb", "a\rb", "tab\there", "\x1b[31m", "del\x7f", "c1\x85", "ls\u2028", "sur\ud800"]
)
def test_subject_control_characters_are_refused(subject: str) -> None:
    assert subject_problem(subject)
    with pytest.raises(UnsafeText) as refused:
        script_for(auto_reply=on("x", subject=subject))
    assert refused.value.field == "subject"


def test_text_checks_match_the_unicode_categories() -> None:
    sample = [*range(0, 0x3000), *range(0xD800, 0xE000), 0xFEFF, 0x1F600, 0x10FFFF]
    for code in sample:
        ch = chr(code)
        category = unicodedata.category(ch)
        assert (subject_problem(f"a{ch}b") is None) == (category not in ("Cc", "Cs") and ch not in "\u2028\u2029"), code
        assert (body_problem(f"a{ch}b") is None) == (ch != "\x00" and category != "Cs"), code


def test_no_body_no_reply() -> None:
    assert script_for(auto_reply=on("")) == script_for() == script_for(auto_reply=AutoReply(body="off"))


@pytest.mark.parametrize("body", ["nul\x00", "sur\udfff"])
def test_unencodable_bodies_are_refused(body: str) -> None:
    with pytest.raises(UnsafeText):
        script_for(auto_reply=on(body))


NASTY = [
    '"',
    "\\",
    '\\"',
    '";\ndiscard;\n"',
    "*/ /* # ",
    "${x} ${hex:41}",
    "text:\n.\n",
    "\r\n.\r\n",
    "\n",
    "é☃😀",
    "x" * 5000,
]

#: Text the API accepts: any Unicode but NUL and lone surrogates; subjects also without controls.
#: (An empty body is no reply at all: see test_no_body_no_reply.)
body_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=300
) | st.sampled_from(NASTY)
subject_text = st.text(
    st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\u2028\u2029"), min_size=1, max_size=100
) | st.sampled_from(["${x}", '"', "\\", "*/", "é☃😀"])


@hsettings(max_examples=200, derandomize=True, deadline=None)
@given(body=body_text, subject=st.none() | subject_text)
def test_user_text_stays_inside_its_string(body: str, subject: str | None) -> None:
    """Whatever the text, the script parses back to the same commands with the text unchanged."""
    script = script_for(spam=5, auto_reply=on(body, subject=subject), address="a@example.com")
    tree = parse(script)
    assert [c.name for c in tree] == ["require", "if", "if", "if"]
    vac = vacation_of(script)
    assert reply_text(vac) == lf(body)
    reason = tools.unquote(vac["reason"])
    assert reason.isascii() and max(len(line) for line in reason.split("\r\n")) <= 76
    if subject is not None:
        assert tools.unquote(vac.extra_arguments["subject"]) == subject
    assert len(find(tree, "vacation")) == 1 and not find(tree, "discard") and not find(tree, "redirect")


# --------------------------------------------------------------------------- stored settings


def test_settings_json_round_trip_and_script_options() -> None:
    s = AutoReply(
        enabled=True,
        subject="Sujet é",
        body="Corps\nligne 2",
        from_date=datetime(2026, 12, 20, tzinfo=UTC),
        to_date=datetime(2027, 1, 4, tzinfo=UTC),
    )
    column = Mailbox.__table__.c.auto_reply.type  # type: ignore[attr-defined]
    text = column.process_bind_param(s, None)
    # The format the previous version stored (no data migration), read back as it was.
    assert text == (
        '{"enabled":true,"subject":"Sujet é","body":"Corps\\nligne 2",'
        '"from_date":"2026-12-20T00:00:00Z","to_date":"2027-01-04T00:00:00Z"}'
    )
    assert column.process_result_value(text, None) == s
    assert column.process_result_value(None, None) == AutoReply()
    assert column.process_result_value("{not json", None) == AutoReply()  # logged, read as disabled
    assert column.process_result_value('{"enabled": "maybe"}', None) == AutoReply()
    row = Mailbox(
        id="mbx_1",
        organization_id="org",
        domain_id="dom",
        address="hello@example.com",
        local_part="hello",
        password_hash="x",
        auto_reply=s,
        spam_filter_threshold=9,
    )
    options = ScriptOptions.of(CYRUS, row)
    assert options == ScriptOptions(server=CYRUS, address="hello@example.com", spam_threshold=9, auto_reply=s, rules=[])
    vac = vacation_of(build_script(options))
    assert tools.unquote(vac.extra_arguments["from"]) == "hello@example.com"
    assert tools.unquote_arg(vac.extra_arguments["addresses"]) == ["hello@example.com"]
    row.auto_reply = AutoReply(enabled=False, body="kept")
    assert "vacation" not in build_script(ScriptOptions.of(CYRUS, row))
    assert "vacation" not in build_script(
        ScriptOptions.of(
            CYRUS, Mailbox(id="m", organization_id="o", domain_id="d", local_part="a", address="a@x", password_hash="h")
        )
    )
    row.spam_filter_threshold = 99
    assert ScriptOptions.of(CYRUS, row).spam_threshold == 5  # logged, the default
    bare = type("Row", (), {"id": "mbx_2", "address": "b@example.com"})()  # a row-like object: the defaults
    assert ScriptOptions.of(CYRUS, bare) == ScriptOptions(server=CYRUS, address="b@example.com", spam_threshold=5)


def _problems(s: AutoReply) -> set[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as refused:
        normalize_auto_reply(s)
    return {(d["field"], d["code"]) for d in refused.value.details or []}


def test_normalize_checks_everything_before_building() -> None:
    t0 = datetime(2026, 12, 20, tzinfo=UTC)
    assert _problems(AutoReply(enabled=True)) == {("body", "missing")}
    assert _problems(AutoReply(enabled=True, body="  \n")) == {("body", "missing")}
    assert _problems(AutoReply(enabled=True, body="x", subject="a\nb")) == {("subject", "control_character")}
    assert _problems(AutoReply(enabled=False, subject=" ")) == {("subject", "blank")}
    assert _problems(AutoReply(enabled=False, body="x" * 5001)) == {("body", "string_too_long")}
    assert _problems(AutoReply(enabled=False, from_date=t0, to_date=t0)) == {("to_date", "before_from_date")}
    assert _problems(AutoReply(enabled=False, from_date=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))) == {
        ("from_date", "datetime_out_of_range")
    }
    ok = normalize_auto_reply(
        AutoReply(
            enabled=False,
            from_date=datetime(2026, 12, 20, 1, 0, 0, 5000),
            to_date=datetime(2026, 12, 20, 3, tzinfo=timezone(timedelta(hours=1))),
        )
    )
    assert ok.from_date == datetime(2026, 12, 20, 1, tzinfo=UTC)  # naive is UTC; fractions dropped
    assert ok.to_date == datetime(2026, 12, 20, 2, tzinfo=UTC)
    with pytest.raises(ValidationFailed):  # equal after conversion: not after
        normalize_auto_reply(AutoReply(from_date=datetime(2026, 12, 20, 1), to_date=datetime(2026, 12, 20, 1, 0, 0, 5)))


def test_cyrus_options_allow_the_period_and_big_scripts() -> None:
    assert VACATION_MIN_RESPONSE_SECONDS <= AUTO_REPLY_DAYS * 86400
    text = render_imapd_conf(CyrusLayout(Path("/srv/c")), admin_user="admin", authd_socket=Path("/srv/a.sock"))
    options = dict(line.split(": ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert options["sieve_vacation_min_response"] == f"{VACATION_MIN_RESPONSE_SECONDS}s"
    assert options["sieve_maxscriptsize"] == str(SIEVE_MAX_SCRIPT_KB)
    assert options["sieve_utf8fileinto"] == "yes"
    assert SIEVE_MAX_SCRIPT_KB * 1024 >= 50 * 10 * 256 * 2  # 50 rules x 10 conditions x 256 chars, escaped


# --------------------------------------------------------------------------- the operations (fake mail server)


@pytest.fixture
def fake() -> FakeJmap:
    return FakeJmap()


@pytest.fixture
def client(settings: Settings, mail: FakeMailServer, fake: FakeJmap) -> Iterator[TestClient]:
    """The app on the fake mail server, keeping the fake JMAP server at hand (``fake``)."""
    import httpx

    app = create_app(settings, mail_server=mail, jmap_transport=httpx.MockTransport(fake))
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def active_script(fake: FakeJmap, address: str) -> str:
    (active,) = [s for s in fake.scripts[address].values() if s["isActive"]]
    return fake.blobs[str(active["blobId"])].decode()


def test_patch_auto_reply_stores_and_installs(
    client: TestClient, fake: FakeJmap, key: str, mbx: dict[str, Any]
) -> None:
    url = f"/v1/mailboxes/{mbx['id']}/auto-reply"
    assert "vacation" not in active_script(fake, mbx["address"])
    assert "X-Spam-Score" in active_script(fake, mbx["address"])  # every mailbox has the spam rule
    body = {
        "enabled": True,
        "subject": "Away",
        "body": "Back on Monday.\n-- H",
        "from_date": "2026-12-20T09:00:00+01:00",
        "to_date": "2027-01-04T00:00:00Z",
    }
    r = client.patch(url, json=body, headers=auth(key))
    assert r.status_code == 200, r.text
    assert r.json()["auto_reply"] == {
        "enabled": True,
        "subject": "Away",
        "body": "Back on Monday.\n-- H",
        "from_date": "2026-12-20T08:00:00Z",
        "to_date": "2027-01-04T00:00:00Z",
    }
    assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).json() == r.json()
    script = active_script(fake, mbx["address"])
    assert reply_text(vacation_of(script)) == "Back on Monday.\n-- H"
    # The request states the whole setting: what is left out is cleared.
    r = client.patch(url, json={"enabled": False}, headers=auth(key))
    assert r.status_code == 200, r.text
    assert r.json()["auto_reply"] == {
        "enabled": False,
        "subject": None,
        "body": None,
        "from_date": None,
        "to_date": None,
    }
    assert "vacation" not in active_script(fake, mbx["address"])


@pytest.mark.parametrize(
    "body,field",
    [
        ({"enabled": True}, "body"),
        ({"enabled": True, "body": ""}, "body"),
        ({"enabled": True, "body": "x" * 5001}, "body"),
        ({"enabled": True, "body": "x", "subject": "a\r\nBcc: evil@example.org"}, "subject"),
        ({"enabled": True, "body": "x", "subject": "tab\there"}, "subject"),
        ({"enabled": True, "body": "x", "subject": ""}, "subject"),
        ({"enabled": True, "body": "x", "subject": "s" * 256}, "subject"),
        (
            {"enabled": True, "body": "x", "from_date": "2027-01-01T00:00:00Z", "to_date": "2026-01-01T00:00:00Z"},
            "to_date",
        ),
        ({"enabled": True, "body": "x", "from_date": "yesterday"}, "from_date"),
        ({"enabled": "yes", "body": "x"}, "enabled"),
        ({"body": "x"}, "enabled"),
        ({"enabled": True, "body": "x", "extra": 1}, "extra"),
    ],
)
def test_patch_auto_reply_422_before_any_script(
    client: TestClient,
    fake: FakeJmap,
    key: str,
    mbx: dict[str, Any],
    body: dict[str, Any],
    field: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shipmail.delivery import service as sieve_sync

    def never(options: Any) -> str:
        raise AssertionError("no script may be built for an invalid request")

    monkeypatch.setattr(sieve_sync, "build_script", never)
    before = fake.requests
    r = client.patch(f"/v1/mailboxes/{mbx['id']}/auto-reply", json=body, headers=auth(key))
    assert r.status_code == 422, r.text
    assert field in [d["field"] for d in r.json()["error"]["details"]], r.json()
    assert fake.requests == before


def test_lone_surrogate_is_422_not_500(client: TestClient, key: str, mbx: dict[str, Any]) -> None:
    raw = b'{"enabled": true, "body": "x\\ud800y"}'
    r = client.patch(
        f"/v1/mailboxes/{mbx['id']}/auto-reply", content=raw, headers={**auth(key), "Content-Type": "application/json"}
    )
    assert r.status_code == 422, r.text


def test_patch_spam_filter(client: TestClient, fake: FakeJmap, key: str, mbx: dict[str, Any]) -> None:
    url = f"/v1/mailboxes/{mbx['id']}/spam-filter"
    assert mbx["spam_filter_threshold"] == 5
    r = client.patch(url, json={"threshold": 9}, headers=auth(key))
    assert r.status_code == 200, r.text
    assert r.json()["spam_filter_threshold"] == 9
    assert score_pattern(9) in active_script(fake, mbx["address"])
    for bad in (0, 15, "5", 5.5, True, None):
        r = client.patch(url, json={"threshold": bad}, headers=auth(key))
        assert r.status_code == 422, (bad, r.text)
    assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).json()["spam_filter_threshold"] == 9


def test_scope_tenant_and_unknown_mailbox(
    client: TestClient, settings: Settings, key: str, mbx: dict[str, Any]
) -> None:
    read_only = make_key(settings, scopes=["mailboxes:read"])
    other_org = make_key(settings, org="other")
    for path, body in (("auto-reply", {"enabled": False}), ("spam-filter", {"threshold": 3})):
        url = f"/v1/mailboxes/{mbx['id']}/{path}"
        assert client.patch(url, json=body, headers=auth(read_only)).status_code == 403
        assert client.patch(url, json=body, headers=auth(other_org)).status_code == 404
        assert client.patch(f"/v1/mailboxes/mbx_nope/{path}", json=body, headers=auth(key)).status_code == 404


def test_rejected_script_leaves_the_row_unchanged(
    client: TestClient, settings: Settings, key: str, mbx: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipmail.delivery import service as sieve_sync
    from shipmail.http.errors import ShipmailError

    async def refuse(svc: Any, row: Any) -> None:
        raise ValidationFailed("The Sieve script was refused.")

    monkeypatch.setattr(sieve_sync, "install", refuse)
    r = client.patch(f"/v1/mailboxes/{mbx['id']}/spam-filter", json={"threshold": 2}, headers=auth(key))
    assert r.status_code == 422
    r = client.patch(f"/v1/mailboxes/{mbx['id']}/auto-reply", json={"enabled": True, "body": "x"}, headers=auth(key))
    assert r.status_code == 422
    assert issubclass(ValidationFailed, ShipmailError)

    async def rows(s: Any) -> Mailbox:
        return await s.get(Mailbox, mbx["id"])  # type: ignore[no-any-return]

    row = run_db(settings, rows)
    assert row.spam_filter_threshold == 5 and row.auto_reply == AutoReply()


def test_reinstall_all_fails_an_unreadable_row_alone(
    client: TestClient, fake: FakeJmap, settings: Settings, key: str, mbx: dict[str, Any]
) -> None:
    import sqlalchemy as sa

    from shipmail.delivery import service as sieve_sync

    other = client.post(
        "/v1/mailboxes",
        json={"domain_id": mbx["domain_id"], "address": "other", "password": "CorrectHorse9"},
        headers=auth(key),
    ).json()

    async def corrupt(s: Any) -> None:
        await s.exec(sa.text("UPDATE mailboxes SET rules = '[{\"id\": 1}]' WHERE id = :id").bindparams(id=other["id"]))
        await s.commit()

    run_db(settings, corrupt)
    before = active_script(fake, mbx["address"])
    services = client.app.state.services  # type: ignore[attr-defined]
    assert client.portal is not None
    assert client.portal.call(sieve_sync.reinstall_all, services) == (1, [other["id"]])
    assert active_script(fake, mbx["address"]) == before  # rebuilt: the same script
