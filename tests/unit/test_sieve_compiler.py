"""The delivery-script compiler: sievelib builds it, sievelib parses it back, the server decides
the server-specific test (Cyrus: jmapquery), and strings are escaped by construction."""

from __future__ import annotations

import json

import pytest
from sievelib import commands, tools
from sievelib.parser import Parser

from shipmail.mailserver.base import DeliverySieve, SieveTest
from shipmail.mailserver.cyrus_server import CyrusMailServer
from shipmail.sieve.compiler import HAS_ATTACHMENT_KEYWORD, ScriptOptions, SieveBuildError, build_script, parses, register_test

CYRUS = DeliverySieve(has_attachment=SieveTest("jmapquery", "vnd.cyrus.jmapquery", '{"hasAttachment":true}'))


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
    assert tools.unquote(action["list-of-flags"]) == HAS_ATTACHMENT_KEYWORD
    assert script.count("\n") < 10  # small: one rule


def test_the_cyrus_server_provides_the_jmapquery_test() -> None:
    server = CyrusMailServer(host="127.0.0.1", imap_port=1, jmap_port=1, admin_user="a", admin_password="p",
                             jwt_secret=b"k" * 32)
    assert server.delivery_sieve() == CYRUS


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
    with pytest.raises(SieveBuildError):
        register_test(SieveTest("no spaces", "x", "y"))
    with pytest.raises(SieveBuildError):
        register_test(SieveTest("header", "x", "y"))  # a command sievelib already knows
    # Registering the same test twice is fine.
    assert register_test(CYRUS.has_attachment) is register_test(CYRUS.has_attachment)  # type: ignore[arg-type]


def test_parses_reports_errors() -> None:
    assert parses('if jmapquery "x" { addflag "y"; }') is not None  # extension not required
    assert parses("frobnicate;") is not None
