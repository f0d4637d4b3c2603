"""The delivery-script compiler: text built by shipmail.sieve.build in sievelib's own layout,
parsed back by sievelib here (never at run time), the server decides the server-specific test
(Cyrus: jmapquery), and strings are escaped by construction."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sievelib import commands, tools
from sievelib.parser import Parser

from shipmail.db.types import STORAGE_CONTEXT
from shipmail.delivery.script import ScriptOptions, build_script, prelude
from shipmail.mailserver.base import DeliverySieve, SieveTest
from shipmail.mailserver.cyrus_server import NEVER_INLINE_TYPES, CyrusMailServer
from shipmail.rules.schemas import RULES
from shipmail.settings.schemas import AutoReply
from shipmail.sieve import build, extensions
from shipmail.sieve.build import HAS_ATTACHMENT
from shipmail.sieve.script import Section, SieveBuildError, assemble, parses

CYRUS = DeliverySieve(has_attachment=SieveTest("jmapquery", "vnd.cyrus.jmapquery", '{"hasAttachment":true}'))
assert CYRUS.has_attachment is not None
extensions.register_test(CYRUS.has_attachment)


def parse(script: str) -> list[commands.Command]:
    parser = Parser()
    assert parser.parse(script), parser.error
    return list(parser.result)


def test_cyrus_script_parses_back_with_the_flag_rule() -> None:
    script = build_script(ScriptOptions(server=CYRUS))
    tree = parse(script)
    require, rule = tree
    assert isinstance(require, commands.RequireCommand)
    assert set(tools.unquote_arg(require["capabilities"])) == {"imap4flags", "vnd.cyrus.jmapquery"}
    assert isinstance(rule, commands.IfCommand)
    test = rule["test"]
    assert test.name == "jmapquery"
    assert json.loads(tools.unquote(test["argument"])) == {"hasAttachment": True}
    (action,) = rule.children
    assert isinstance(action, commands.AddflagCommand)
    assert tools.unquote(action["list-of-flags"]) == HAS_ATTACHMENT
    assert script.count("\n") < 10  # small: one rule


def test_the_cyrus_server_provides_the_jmapquery_test() -> None:
    server = CyrusMailServer(
        host="127.0.0.1", imap_port=1, jmap_port=1, admin_user="a", admin_password="p", jwt_secret=b"k" * 32
    )
    needs = server.delivery_sieve()
    assert needs.has_attachment is not None
    assert (needs.has_attachment.name, needs.has_attachment.extension) == ("jmapquery", "vnd.cyrus.jmapquery")
    # RFC 8621's rule: Cyrus's own hasAttachment, or a part of a type never shown inline.
    query = json.loads(needs.has_attachment.argument)
    assert query["operator"] == "OR" and query["conditions"][0] == {"hasAttachment": True}
    assert [c["attachmentType"] for c in query["conditions"][1:]] == list(NEVER_INLINE_TYPES)
    assert not any(t.startswith(("image/", "audio/", "video/")) for t in NEVER_INLINE_TYPES)
    assert not {"text/plain", "text/html", "text/richtext", "text/enriched"} & set(NEVER_INLINE_TYPES)
    script = build_script(ScriptOptions(server=needs))
    assert parse(script) and "vnd.cyrus.jmapquery" in script


def test_without_server_needs_the_script_is_empty_and_valid() -> None:
    script = build_script(ScriptOptions())
    assert script == ""
    assert parses(script) is None
    extra = build_script(ScriptOptions(server=DeliverySieve(requires=("fileinto",))))
    assert parse(extra) and "fileinto" in extra


def test_server_test_arguments_are_escaped_not_spliced() -> None:
    nasty = 'x" { discard; } if true { "\\\n;'
    server = DeliverySieve(has_attachment=SieveTest("jmapquery", "vnd.cyrus.jmapquery", nasty))
    script = build_script(ScriptOptions(server=server))
    _, rule = parse(script)
    assert tools.unquote(rule["test"]["argument"]) == nasty
    assert "discard" not in [c.name for c in rule.children]


def test_bad_server_tests_are_refused() -> None:
    with pytest.raises(extensions.ExtensionError):
        extensions.register_test(SieveTest("no spaces", "x", "y"))
    with pytest.raises(extensions.ExtensionError):
        extensions.register_test(SieveTest("header", "x", "y"))  # a command sievelib already knows
    with pytest.raises(SieveBuildError):
        prelude(SieveTest("no spaces", "x", "y"))
    # Registering the same test twice is fine.
    assert CYRUS.has_attachment is not None
    assert extensions.register_test(CYRUS.has_attachment) is extensions.register_test(CYRUS.has_attachment)


def test_parses_reports_errors() -> None:
    assert parses('if jmapquery "x" { addflag "y"; }') is not None  # extension not required
    assert parses("frobnicate;") is not None


def test_building_blocks() -> None:
    assert build.test("header", build.IS, "a b", ["x", 'y"']) == 'header :is "a b" ["x", "y\\""]'
    assert build.action("vacation", build.Tag(":days"), 1, "r\\") == 'vacation :days 1 "r\\\\"'
    t1, t2 = build.test("exists", "a"), build.test("exists", "b")
    assert build.combine("all", [t1]) == t1
    assert build.combine("all", [t1, t2]) == 'allof (exists "a", exists "b")'
    assert build.combine("any", [t1, t2]) == 'anyof (exists "a", exists "b")'
    assert build.not_(t1) == 'not exists "a"'
    with pytest.raises(ValueError):
        build.combine("all", [])
    for bad in ("is", ":Is", ": is", ':is"'):
        with pytest.raises(ValueError):
            build.Tag(bad)
    with pytest.raises(ValueError):
        build.action("x", -1)
    with pytest.raises(TypeError):
        build.action("x", True)


def test_assemble_declares_each_requirement_once_in_order() -> None:
    one = Section("first\nline", build.test("exists", "x"), [build.STOP], requires=("b", "a"))
    two = Section("second", build.test("exists", "y"), [build.action("keep")], requires=("a", "c"))
    assert assemble([one, two], requires=("z", "b")) == (
        'require ["z", "b", "a", "c"];\n\n'
        '# Filter: first line\nif exists "x" {\n    stop;\n}\n'
        '# Filter: second\nif exists "y" {\n    keep;\n}\n'
    )
    assert assemble([]) == ""


def _printed_by_sievelib(script: str) -> str:
    """``script`` parsed by sievelib and printed again by sievelib (without the comments)."""
    out = io.StringIO()
    for command in parse(script):
        command.tosieve(target=out)
        if isinstance(command, commands.RequireCommand):
            out.write("\n")
    return out.getvalue()


def test_the_layout_is_sievelibs_own() -> None:
    """Everything the compilers write, parsed by sievelib and printed back by it: the same text
    (bar the ``# Filter:`` comments), so the text builders write what sievelib's object model
    would have."""
    rule: dict[str, Any] = {
        "name": "r",
        "enabled": True,
        "position": 0,
        "match_mode": "any",
        "stop": True,
        "conditions": [
            {"type": t, "value": 'v "q" \\ ${x}'}
            for t in ("from_is", "from_contains", "recipient_is", "plus_tag_is", "subject_contains")
        ]
        + [
            {"type": "has_attachment"},
            {"type": "list_unsubscribe_exists"},
            {
                "type": "group",
                "match_mode": "all",
                "conditions": [{"type": "from_is", "value": "a"}, {"type": "has_attachment"}],
            },
        ],
        "actions": [{"type": "star"}, {"type": "mark_read"}],
    }
    moves = [{"kind": "system", "role": r} for r in ("inbox", "archive", "junk", "trash")]
    moves.append({"kind": "custom", "folder_id": "fld_M1", "fallback_name": "Work/Clients"})
    rules = RULES.validate_python(
        [dict(rule, id=str(uuid.uuid4()), actions=[*rule["actions"], {"type": "move", "target": m}]) for m in moves],
        context=STORAGE_CONTEXT,
    )
    auto_reply = AutoReply(
        enabled=True,
        subject="Away é",
        body="Back\non Monday. é" * 30,
        from_date=datetime(2026, 12, 20, tzinfo=UTC),
        to_date=datetime(2027, 1, 4, tzinfo=UTC),
    )
    script = build_script(
        ScriptOptions(server=CYRUS, address="a@example.com", spam_threshold=7, auto_reply=auto_reply, rules=rules)
    )
    ours = "".join(line + "\n" for line in script.split("\n")[:-1] if not line.startswith("# Filter: "))
    assert _printed_by_sievelib(script) == ours
    assert script.count("# Filter: ") == 1 + 1 + 1 + len(moves)
