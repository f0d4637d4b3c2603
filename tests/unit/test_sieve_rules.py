"""Inbox rules without a mail server: the Sieve they compile to (built and parsed back by
sievelib), the checks the schema cannot express, the stored form, and the API's validation
errors (field paths) against the fake mail server. Delivery behaviour is tested on Cyrus in
tests/integration/test_rules.py."""

from __future__ import annotations

import copy
import json
import unicodedata
import uuid
from typing import Any

import pytest
from sievelib import commands, tools
from sievelib.parser import Parser
from starlette.testclient import TestClient

from shipmail.db.types import STORAGE_CONTEXT
from shipmail.delivery.script import ScriptOptions, build_script
from shipmail.folders.schemas import Folder
from shipmail.http.errors import Conflict, ValidationFailed
from shipmail.mailboxes.models import Mailbox
from shipmail.mailserver.base import DeliverySieve, SieveTest
from shipmail.rules import schemas, service
from shipmail.rules import sieve as rules_sieve
from shipmail.rules.schemas import (
    RULES,
    MailboxRule,
    MailboxRuleAction,
    MailboxRuleCondition,
    MailboxRuleCustomTarget,
    MailboxRuleFlagAction,
    MailboxRuleFlagCondition,
    MailboxRuleGroupCondition,
    MailboxRuleMoveAction,
    MailboxRules,
    MailboxRuleSystemTarget,
    MailboxRuleValueCondition,
    MatchMode,
    UpdateMailboxRulesRequest,
    ValueConditionType,
    clean_loc,
)
from shipmail.sieve import extensions
from shipmail.sieve.build import combine
from shipmail.sieve.script import parses
from tests.unit.conftest import auth, make_key, verify_domain

CYRUS = DeliverySieve(has_attachment=SieveTest("jmapquery", "vnd.cyrus.jmapquery", '{"hasAttachment":true}'))
assert CYRUS.has_attachment is not None
extensions.register_test(CYRUS.has_attachment)


def rid(n: int) -> str:
    return str(uuid.UUID(int=n, version=4))


def value(kind: str, v: str) -> MailboxRuleValueCondition:
    return MailboxRuleValueCondition(type=kind, value=v)  # type: ignore[arg-type]


def flag(kind: str) -> MailboxRuleFlagCondition:
    return MailboxRuleFlagCondition(type=kind)  # type: ignore[arg-type]


def mgroup(mode: str, *conditions: MailboxRuleCondition) -> MailboxRuleGroupCondition:
    return MailboxRuleGroupCondition(type="group", match_mode=mode, conditions=list(conditions))  # type: ignore[arg-type]


def act(kind: str) -> MailboxRuleFlagAction:
    return MailboxRuleFlagAction(type=kind)  # type: ignore[arg-type]


def to_role(role: str) -> MailboxRuleMoveAction:
    return MailboxRuleMoveAction(type="move", target=MailboxRuleSystemTarget(kind="system", role=role))  # type: ignore[arg-type]


def to_folder(mailbox_id: str, path: str) -> MailboxRuleMoveAction:
    """A move to the custom folder ``fld_<mailbox_id>`` as stored (with its fallback path)."""
    target = MailboxRuleCustomTarget.model_validate(
        {"kind": "custom", "folder_id": f"fld_{mailbox_id}", "fallback_name": path}, context=STORAGE_CONTEXT
    )
    return MailboxRuleMoveAction(type="move", target=target)


def rule(
    n: int = 1,
    *,
    position: int = 0,
    enabled: bool = True,
    stop: bool = False,
    match_mode: MatchMode = "all",
    conditions: tuple[MailboxRuleCondition, ...] = (value("subject_contains", "x"),),
    actions: tuple[MailboxRuleAction, ...] = (act("star"),),
    name: str = "r",
) -> MailboxRule:
    return MailboxRule(
        id=uuid.UUID(rid(n)),
        name=name[:120] or "r",
        enabled=enabled,
        position=position,
        match_mode=match_mode,
        stop=stop,
        conditions=list(conditions),
        actions=list(actions),
    )


def script(*rules: MailboxRule) -> str:
    return build_script(ScriptOptions(server=CYRUS, rules=rules))


def tree(text: str) -> list[commands.Command]:
    parser = Parser()
    assert parser.parse(text), parser.error
    return list(parser.result)


def requires(text: str) -> set[str]:
    first = tree(text)[0]
    assert isinstance(first, commands.RequireCommand)
    return set(tools.unquote_arg(first["capabilities"]))


def rule_ifs(text: str) -> list[commands.Command]:
    """The ``if`` commands after the has-attachment prelude."""
    ifs = [c for c in tree(text) if isinstance(c, commands.IfCommand)]
    assert ifs[0]["test"].name == "jmapquery"
    return ifs[1:]


# --------------------------------------------------------------------------- compiler


def test_every_condition_maps_to_its_test() -> None:
    conditions = (
        value("from_is", "ann@example.org"),
        value("from_contains", "example"),
        value("recipient_is", "team@example.com"),
        value("plus_tag_is", "news"),
        value("subject_contains", "invoice"),
        flag("has_attachment"),
        flag("list_unsubscribe_exists"),
    )
    text = script(rule(conditions=conditions))
    assert 'address :all :is "from" "ann@example.org"' in text
    assert 'address :all :contains "from" "example"' in text
    assert (
        'anyof (address :all :is ["to", "cc", "delivered-to"] "team@example.com", '
        'envelope :all :is "to" "team@example.com")'
    ) in text
    assert 'envelope :detail :is "to" "news"' in text
    assert 'header :contains "subject" "invoice"' in text
    assert 'hasflag "$HasAttachment"' in text
    assert 'exists "List-Unsubscribe"' in text
    assert requires(text) == {"vnd.cyrus.jmapquery", "imap4flags", "envelope", "subaddress"}
    (only,) = rule_ifs(text)
    assert only["test"].name == "allof" and len(only["test"]["tests"]) == 7


def test_every_value_type_of_the_schema_compiles() -> None:
    """The compiler has a test for each value type the schema lists (and mypy checks the cases)."""
    for kind in schemas.VALUE_TYPES:
        assert parses(script(rule(conditions=(value(kind, "v"),)))) is None


def test_match_modes_groups_and_a_lone_test() -> None:
    inner = mgroup(
        "any", value("from_is", "a@x"), mgroup("all", flag("has_attachment"), value("subject_contains", "s"))
    )
    text = script(rule(1, match_mode="any", conditions=(inner, flag("list_unsubscribe_exists"))), rule(2, position=1))
    first, second = rule_ifs(text)
    top = first["test"]
    assert top.name == "anyof"
    nested = top["tests"][0]
    assert nested.name == "anyof" and nested["tests"][1].name == "allof"
    assert second["test"].name == "header"  # one condition: no allof around it


def test_actions_flags_first_then_move_then_stop() -> None:
    text = script(rule(actions=(to_folder("abc123", "Work/Clients"), act("star"), act("mark_read")), stop=True))
    (only,) = rule_ifs(text)
    # First the rule's mark (read back by the inbound gateway: mailbox.rule_matched), then its flags.
    assert [c.name for c in only.children] == ["addflag", "addflag", "addflag", "fileinto", "stop"]
    flags = [tools.unquote(c["list-of-flags"]) for c in only.children[:3]]
    assert flags == ["$shipmail-rule-1", "\\Flagged", "\\Seen"]
    assert 'fileinto :mailboxid "abc123" "Work/Clients";' in text
    assert {"fileinto", "mailboxid", "imap4flags"} <= requires(text)


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("inbox", 'fileinto "INBOX";'),
        ("archive", 'fileinto :specialuse "\\\\Archive" "Archive";'),
        ("junk", 'fileinto :specialuse "\\\\Junk" "Junk";'),
        ("trash", 'fileinto :specialuse "\\\\Trash" "Trash";'),
    ],
)
def test_system_moves(role: str, expected: str) -> None:
    text = script(rule(actions=(to_role(role),)))
    assert expected in text
    assert ("special-use" in requires(text)) == (role != "inbox")


def test_order_by_position_ties_in_list_order_disabled_left_out() -> None:
    rules = [
        rule(1, position=5),
        rule(2, position=1),
        rule(3, position=5),
        rule(4, position=0, enabled=False),
        rule(5, position=1),
    ]
    text = script(*rules)
    order = [line.split()[-1] for line in text.splitlines() if line.startswith("# Filter: rule ")]
    assert order == [rid(2), rid(5), rid(1), rid(3)]
    assert rid(4) not in text
    assert [str(r.id) for r in rules_sieve.ordered(rules)] == order


def test_no_rules_or_only_disabled_ones_add_nothing() -> None:
    assert script() == script(rule(enabled=False)) == build_script(ScriptOptions(server=CYRUS))


NASTY = [
    'a"b',
    "back\\slash",
    "end\\",
    '"; discard; "',
    "*/ # not a comment",
    "${var}",
    "x*?y",
    "tab\there",
    "é ü 漢字 🙂",
    "#",
    "}",
    "/* open",
    '\\"',
    " leading and trailing ",
    "a" * 256,
]


@pytest.mark.parametrize("v", NASTY)
def test_values_stay_inside_their_strings(v: str) -> None:
    text = script(
        rule(
            conditions=(
                value("subject_contains", v),
                value("from_is", v),
                value("recipient_is", v),
                value("plus_tag_is", v),
            ),
            actions=(to_folder("m1", v),),
            name=v,
        )
    )
    assert parses(text) is None
    (only,) = rule_ifs(text)
    header, address, recipient, tag = only["test"]["tests"]
    assert tools.unquote(header["key-list"]) == v
    assert tools.unquote(address["key-list"]) == v
    assert [tools.unquote(t["key-list"]) for t in recipient["tests"]] == [v, v]
    assert tools.unquote(tag["key-list"]) == v
    assert [c.name for c in only.children] == ["addflag", "fileinto"]
    assert tools.unquote(only.children[0]["list-of-flags"]) == "$shipmail-rule-1"
    assert tools.unquote(only.children[1]["mailbox"]) == v
    assert "discard" not in [c.name for c in tree(text)]
    assert "variables" not in requires(text)


def test_rule_names_never_reach_the_script() -> None:
    name = "Boss */ }\nif true { discard; }\r\n# x"
    text = script(rule(name=name))
    assert "Boss" not in text and "discard" not in text
    assert f"# Filter: rule {rid(1)}\n" in text
    with pytest.raises(ValueError):  # the comment carries the id, which can only be a UUID
        MailboxRule.model_validate({**rule().model_dump(mode="json"), "id": "not\na uuid"})


def test_sievelib_extension_is_idempotent_and_parses_back() -> None:
    before = [a["name"] for a in commands.FileintoCommand.args_definition]
    extensions.register()
    extensions._registered = False  # force the body again: nothing is added twice
    extensions.register()
    assert [a["name"] for a in commands.FileintoCommand.args_definition] == before
    assert before.count("mailboxid") == before.count("specialuse") == 1
    assert parses('require ["fileinto", "mailboxid"];\nfileinto :mailboxid "x" "y";\n') is None
    assert parses('require ["fileinto", "special-use"];\nfileinto :specialuse "\\\\Junk" "Junk";\n') is None
    assert parses('require ["envelope", "subaddress"];\nif envelope :detail "to" "x" { stop; }\n') is None
    # ... and only after their require.
    assert parses('require "fileinto";\nfileinto :mailboxid "x" "y";\n') is not None
    assert parses('require "envelope";\nif envelope :detail "to" "x" { stop; }\n') is not None


def test_input_the_compiler_cannot_use_is_refused_by_the_types() -> None:
    with pytest.raises(ValueError):
        MailboxRuleMoveAction.model_validate({"type": "move"})
    with pytest.raises(ValueError):
        MailboxRuleSystemTarget.model_validate({"kind": "system", "role": "sent"})
    with pytest.raises(ValueError):
        MailboxRuleGroupCondition.model_validate({"type": "group", "match_mode": "all", "conditions": []})
    with pytest.raises(ValueError):
        combine("all", [])


def test_largest_rule_set_size() -> None:
    """The largest sets the checks let through, for Cyrus's ``sieve_maxscriptsize`` (see
    tests/integration/test_rules.py): 50 rules x 10 ASCII values of 256 characters stay far below
    1 MiB; the worst case (10 recipient_is values of 256 four-byte characters, whose value appears
    twice, in every rule, plus long folder paths) just above it, below 1.2 MB."""

    def rules(kind: ValueConditionType, v: str) -> list[MailboxRule]:
        return [
            rule(
                i,
                position=i,
                stop=True,
                conditions=(mgroup("any", *(value(kind, v) for _ in range(9))), value(kind, v)),
                actions=(to_folder("x" * 24, "\U0001f600" * 250), act("star"), act("mark_read")),
            )
            for i in range(50)
        ]

    typical = len(script(*rules("subject_contains", "v" * 256)).encode())
    worst = len(script(*rules("recipient_is", "\U0001f600" * 256)).encode())
    assert 150_000 < typical < 250_000
    assert 1_048_576 < worst < 1_200_000


# --------------------------------------------------------------------------- checks and storage


def api_rule(n: int = 1, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": rid(n),
        "name": f"rule {n}",
        "enabled": True,
        "position": n,
        "match_mode": "all",
        "stop": False,
        "conditions": [{"type": "subject_contains", "value": "x"}],
        "actions": [{"type": "move", "target": {"kind": "system", "role": "archive"}}],
    }
    data.update(over)
    return data


def problems(rules: list[dict[str, Any]]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        UpdateMailboxRulesRequest.model_validate({"rules": rules})
    assert caught.value.message == "Invalid rules."
    assert schemas.check_rules(RULES.validate_python(rules)) == caught.value.details
    return [(d["field"], d["code"]) for d in caught.value.details]


def group(*conditions: dict[str, Any], mode: str = "all") -> dict[str, Any]:
    return {"type": "group", "match_mode": mode, "conditions": list(conditions)}


LEAF = {"type": "from_is", "value": "a@x"}


def test_check_rules_accepts_the_limits() -> None:
    deepest = group(group(LEAF))  # levels 1, 2, 3
    ten = [group(group(*[LEAF] * 5), *[LEAF] * 4), LEAF]  # groups are not counted
    UpdateMailboxRulesRequest.model_validate(
        {"rules": [api_rule(1, conditions=[deepest]), api_rule(2, conditions=ten)]}
    )


def test_check_rules_problems_with_paths() -> None:
    rules = [
        api_rule(1),
        api_rule(1),  # duplicate id
        api_rule(3, conditions=[LEAF, group(LEAF, group(group(LEAF)))]),  # a group at level 4
        api_rule(4, conditions=[group(*[LEAF] * 10), LEAF]),  # 11 conditions
        api_rule(
            5,
            actions=[
                {"type": "star"},
                {"type": "move", "target": {"kind": "system", "role": "junk"}},
                {"type": "star"},
                {"type": "move", "target": {"kind": "system", "role": "trash"}},
            ],
        ),
        api_rule(
            6,
            name="two\nlines",
            conditions=[
                {"type": "subject_contains", "value": "bell\x07"},
                group({"type": "from_is", "value": "c1\x85"}),
            ],
        ),
    ]
    assert problems(rules) == [
        ("rules[1].id", "duplicate_id"),
        ("rules[2].conditions[1].conditions[1].conditions[0].type", "too_deep"),
        ("rules[3].conditions", "too_many_conditions"),
        ("rules[4].actions[2].type", "duplicate_action"),
        ("rules[4].actions[3].type", "duplicate_action"),
        ("rules[5].name", "invalid_character"),
        ("rules[5].conditions[0].value", "invalid_character"),
        ("rules[5].conditions[1].conditions[0].value", "invalid_character"),
    ]
    # Lone surrogates never get that far: the schema refuses them (JSON can carry them as \ud800).
    surrogate = api_rule(1, conditions=[{"type": "from_is", "value": "\ud800"}])
    assert [(d["field"], d["code"]) for d in validate([surrogate])] == [
        ("rules[0].conditions[0].value", "string_unicode")
    ]


def test_bad_characters() -> None:
    assert schemas.bad_characters("tab\tok é 🙂 \u2028") == []
    assert schemas.bad_characters("a\r\nb\x00\x7f\x85\ud800\ud800") == ["\r", "\n", "\x00", "\x7f", "\x85", "\ud800"]


def test_bad_characters_are_exactly_control_characters_and_surrogates() -> None:
    every = "".join(map(chr, range(0x110000)))
    expected = [ch for ch in every if ch != "\t" and unicodedata.category(ch) in ("Cc", "Cs")]
    assert schemas.bad_characters(every) == expected


def folder(fid: str, name: str, parent: str | None = None, role: str | None = None) -> Folder:
    return Folder(id=fid, name=name, parent_id=parent, role=role)


FOLDERS = [
    folder("I", "Inbox", role="inbox"),
    folder("A", "Archive", role="archive"),
    folder("S", "Sent", role="sent"),
    folder("D", "Drafts", role="drafts"),
    folder("J", "Junk", role="junk"),
    folder("T", "Trash", role="trash"),
    folder("w", "Work"),
    folder("c", "Clients", parent="w"),
]
FOLDERS = [
    Folder(id=f.id, name=f.name, parent_id=f.parent_id, role=f.role, sort_order=n) for n, f in enumerate(FOLDERS)
]


def custom(fid: str) -> dict[str, Any]:
    return {"type": "move", "target": {"kind": "custom", "folder_id": fid}}


def test_resolve_targets_and_storage_round_trip() -> None:
    wire = [api_rule(1, actions=[custom("fld_c"), {"type": "mark_read"}]), api_rule(2)]
    rules = RULES.validate_python(wire)
    stored = service.resolve_targets(rules, FOLDERS)
    target = stored[0].actions[0].target  # type: ignore[union-attr]
    assert isinstance(target, MailboxRuleCustomTarget) and target.fallback_name == "Work/Clients"
    assert rules[0].actions[0].target.fallback_name == ""  # type: ignore[union-attr]  # input untouched
    # The wire form (responses) never shows fallback_name; the stored form has it.
    assert RULES.dump_python(stored, mode="json") == wire
    assert (
        "fallback_name" not in MailboxRules(mailbox_id="m", address="a@x", rules=stored, folders=[]).model_dump_json()
    )
    stored_json = json.loads(RULES.dump_json(stored, context=STORAGE_CONTEXT))
    assert stored_json[0]["actions"][0]["target"] == {
        "kind": "custom",
        "folder_id": "fld_c",
        "fallback_name": "Work/Clients",
    }
    # The column: written and read (validated) in the storage context.
    column = Mailbox.__table__.c.rules.type  # type: ignore[attr-defined]
    text = column.process_bind_param(stored, None)
    assert column.process_result_value(text, None) == stored
    assert column.process_result_value(None, None) == [] and column.process_result_value("", None) == []
    row = Mailbox(
        id="mbx_1", organization_id="o", domain_id="d", local_part="a", address="a@x", password_hash="h", rules=stored
    )
    text = build_script(ScriptOptions.of(CYRUS, row))
    assert 'fileinto :mailboxid "c" "Work/Clients";' in text
    assert 'fileinto :specialuse "\\\\Archive" "Archive";' in text
    assert (
        Mailbox(id="m", organization_id="o", domain_id="d", local_part="a", address="a@x", password_hash="h").rules
        == []
    )


#: A rule set as the previous version stored it (json.dumps of the API dicts plus fallback_name):
#: read as it is, and written back byte for byte (no data migration).
OLD_STORED = (
    '[{"id":"00000000-0000-4000-8000-000000000001","name":"Clients é","enabled":true,"position":0,'
    '"match_mode":"any","stop":true,"conditions":[{"type":"group","match_mode":"all","conditions":'
    '[{"type":"from_is","value":"a@x"},{"type":"has_attachment"}]},{"type":"plus_tag_is","value":"t"}],'
    '"actions":[{"type":"move","target":{"kind":"custom","folder_id":"fld_c","fallback_name":"Work/Clients"}},'
    '{"type":"star"}]},{"id":"00000000-0000-4000-8000-000000000002","name":"r","enabled":false,'
    '"position":1,"match_mode":"all","stop":false,"conditions":[{"type":"list_unsubscribe_exists"}],'
    '"actions":[{"type":"move","target":{"kind":"system","role":"junk"}}]}]'
)


def test_the_stored_format_is_unchanged() -> None:
    column = Mailbox.__table__.c.rules.type  # type: ignore[attr-defined]
    rules = column.process_result_value(OLD_STORED, None)
    assert rules[0].actions[0].target.fallback_name == "Work/Clients"
    assert column.process_bind_param(rules, None) == OLD_STORED
    with pytest.raises(ValueError):  # validated on read
        column.process_result_value('[{"id": "x"}]', None)


def test_a_request_cannot_set_the_fallback_name() -> None:
    bad = api_rule(
        1, actions=[{"type": "move", "target": {"kind": "custom", "folder_id": "fld_c", "fallback_name": "x"}}]
    )
    assert [(d["field"], d["code"]) for d in validate([bad])] == [
        ("rules[0].actions[0].target.fallback_name", "extra_forbidden")
    ]


def test_resolve_targets_refuses_unknown_and_system_folders() -> None:
    rules = RULES.validate_python(
        [
            api_rule(1, actions=[custom("fld_nope")]),
            api_rule(2, actions=[custom("fld_J")]),
            api_rule(3, actions=[custom("fld_S")]),
            api_rule(4, actions=[custom("c")]),
        ]
    )
    with pytest.raises(ValidationFailed) as caught:
        service.resolve_targets(rules, FOLDERS)
    got = [(d["field"], d["code"]) for d in caught.value.details]
    assert got == [
        ("rules[0].actions[0].target.folder_id", "not_found"),
        ("rules[1].actions[0].target.folder_id", "system_folder"),
        ("rules[2].actions[0].target.folder_id", "system_folder"),
        ("rules[3].actions[0].target.folder_id", "not_found"),
    ]
    assert '"kind": "system", "role": "junk"' in caught.value.details[1]["message"]


def test_rule_folders_are_the_targets_in_tree_order() -> None:
    got = service.rule_folders(FOLDERS)
    assert [(f.id, f.kind, f.role, f.parent_id) for f in got] == [
        ("fld_I", "system", "inbox", None),
        ("fld_A", "system", "archive", None),
        ("fld_J", "system", "junk", None),
        ("fld_T", "system", "trash", None),
        ("fld_w", "custom", None, None),
        ("fld_c", "custom", None, "fld_w"),
    ]


def test_folders_targeted_by_rules_cannot_be_deleted() -> None:
    rules = RULES.validate_python([api_rule(1, name="Clients", enabled=False, actions=[custom("fld_c")])])
    stored = service.resolve_targets(rules, FOLDERS)
    row = Mailbox(
        id="mbx_1", organization_id="o", domain_id="d", local_part="a", address="a@x", password_hash="h", rules=stored
    )
    with pytest.raises(Conflict, match="'Clients'"):
        schemas.ensure_not_targeted(row.rules, ["w", "c"])  # deleting Work takes Clients along
    schemas.ensure_not_targeted(row.rules, ["w"])
    schemas.ensure_not_targeted(row.rules, [])


# --------------------------------------------------------------------------- request validation


def validate(rules: list[Any]) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        UpdateMailboxRulesRequest.model_validate({"rules": rules})
    return caught.value.details


def test_clean_loc_drops_only_union_tags() -> None:
    assert clean_loc(("rules", 3, "conditions", 0, "group", "conditions", 1, "from_is", "value")) == [
        "rules",
        3,
        "conditions",
        0,
        "conditions",
        1,
        "value",
    ]
    assert clean_loc(("rules", 0, "actions", 1, "move", "target", "custom", "folder_id")) == [
        "rules",
        0,
        "actions",
        1,
        "target",
        "folder_id",
    ]
    # An unknown field that happens to be named like a tag stays.
    assert clean_loc(("rules", 0, "conditions", 0, "from_is", "group")) == ["rules", 0, "conditions", 0, "group"]


def test_request_errors_have_clean_field_paths() -> None:
    bad = copy.deepcopy([api_rule(i) for i in range(5)])
    bad[3]["conditions"] = [{"type": "from_is", "value": "x" * 257}]
    bad[1]["conditions"] = [group({"type": "subject_contains", "value": ""})]
    bad[2]["actions"] = [{"type": "forward"}]
    bad[4]["actions"] = [{"type": "move", "target": {"kind": "custom"}}]
    bad[0]["conditions"] = [{"type": "nope"}, {"value": "x"}, {"type": "has_attachment", "value": "x"}]
    got = {(d["field"], d["code"]) for d in validate(bad)}
    assert got == {
        ("rules[3].conditions[0].value", "string_too_long"),
        ("rules[1].conditions[0].conditions[0].value", "string_too_short"),
        ("rules[2].actions[0].type", "union_tag_invalid"),
        ("rules[4].actions[0].target.folder_id", "missing"),
        ("rules[0].conditions[0].type", "union_tag_invalid"),
        ("rules[0].conditions[1].type", "union_tag_not_found"),
        ("rules[0].conditions[2].value", "extra_forbidden"),
    }
    accepted = UpdateMailboxRulesRequest.model_validate({"rules": [api_rule(1, actions=[{"type": "send_webhook"}])]})
    assert [a.type for a in accepted.rules[0].actions] == ["send_webhook"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "not-a-uuid"}, "rules[0].id"),
        ({"name": ""}, "rules[0].name"),
        ({"name": "n" * 121}, "rules[0].name"),
        ({"position": -1}, "rules[0].position"),
        ({"match_mode": "most"}, "rules[0].match_mode"),
        ({"conditions": []}, "rules[0].conditions"),
        ({"conditions": [LEAF] * 11}, "rules[0].conditions"),
        ({"actions": []}, "rules[0].actions"),
        ({"actions": [{"type": "star"}] * 5}, "rules[0].actions"),
        ({"extra": 1}, "rules[0].extra"),
        (
            {"actions": [{"type": "move", "target": {"kind": "system", "role": "sent"}}]},
            "rules[0].actions[0].target.role",
        ),
        ({"actions": [{"type": "move"}]}, "rules[0].actions[0].target"),
    ],
)
def test_schema_errors(change: dict[str, Any], field: str) -> None:
    assert field in [d["field"] for d in validate([api_rule(1, **change)])]


def test_at_most_fifty_rules() -> None:
    assert [d["field"] for d in validate([api_rule(i) for i in range(51)])] == ["rules"]
    UpdateMailboxRulesRequest.model_validate({"rules": [api_rule(i) for i in range(50)]})


# --------------------------------------------------------------------------- the API on the fake server


@pytest.fixture
def mailbox(client: TestClient, settings: Any) -> dict[str, Any]:
    key = make_key(settings)
    client.post("/v1/domains", json={"name": "rules.example"}, headers=auth(key))
    verify_domain(settings, "rules.example")
    dom = client.get("/v1/domains", headers=auth(key)).json()["data"][0]
    r = client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "r", "generate_password": True}, headers=auth(key)
    )
    assert r.status_code == 201, r.text
    return {**r.json(), "key": key}


def test_api_round_trip_on_the_fake_server(client: TestClient, mailbox: dict[str, Any]) -> None:
    h = auth(mailbox["key"])
    url = f"/v1/mailboxes/{mailbox['id']}/rules"
    r = client.get(url, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "mailbox_rules" and body["rules"] == [] and body["address"] == mailbox["address"]
    assert sorted(f["role"] for f in body["folders"]) == ["archive", "inbox", "junk", "trash"]
    rules = [api_rule(2, id=rid(2).upper()), api_rule(1, conditions=[group(LEAF, {"type": "has_attachment"})])]
    r = client.put(url, json={"rules": rules}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["rules"][0]["id"] == rid(2)  # normalised
    assert client.get(url, headers=h).json()["rules"] == r.json()["rules"]
    r = client.put(url, json={"rules": [api_rule(1, actions=[custom("fld_nope")])]}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "rules[0].actions[0].target.folder_id"
    r = client.put(url, json={"rules": [api_rule(1), api_rule(1)]}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "rules[1].id"
    r = client.put(url, json={"rules": [api_rule(1, name="a\u0000b")]}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "rules[0].name"
    assert len(client.get(url, headers=h).json()["rules"]) == 2  # unchanged by the refused PUTs
    assert client.put(url, json={"rules": []}, headers=h).json()["rules"] == []


def test_api_scopes_and_unknown_mailbox(client: TestClient, mailbox: dict[str, Any], settings: Any) -> None:
    url = f"/v1/mailboxes/{mailbox['id']}/rules"
    reader = make_key(settings, scopes=["mailbox_rules:read"])
    assert client.get(url, headers=auth(reader)).status_code == 200
    assert client.put(url, json={"rules": []}, headers=auth(reader)).status_code == 403
    other = make_key(settings, scopes=["mailboxes:write"])
    assert client.get(url, headers=auth(other)).status_code == 403
    assert client.get("/v1/mailboxes/mbx_nope/rules", headers=auth(mailbox["key"])).status_code == 404
    stranger = make_key(settings, org="other")
    assert client.put(url, json={"rules": []}, headers=auth(stranger)).status_code == 404


def test_put_reads_the_mailbox_row_once(client: TestClient, mailbox: dict[str, Any]) -> None:
    """One unit of work: the row is read once (locked), updated once, in one transaction."""
    import sqlalchemy as sa

    engine = client.app.state.services.db.engine.sync_engine  # type: ignore[attr-defined]
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "mailboxes" in statement:
            statements.append(statement.split()[0].upper())

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        r = client.put(
            f"/v1/mailboxes/{mailbox['id']}/rules", json={"rules": [api_rule(1)]}, headers=auth(mailbox["key"])
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert r.status_code == 200, r.text
    assert statements == ["SELECT", "UPDATE"]


def test_each_rule_marks_what_it_matched_with_its_number() -> None:
    """The n-th rule that runs (disabled ones do not count) adds ``$shipmail-rule-<n>``;
    :func:`matched_rules` maps the marks on a message back to the rules."""
    from shipmail.rules.sieve import matched_rules

    first, off, second = (
        rule(1, name="a", position=0),
        rule(2, name="off", position=1, enabled=False),
        rule(3, name="b", position=2),
    )
    text = script(first, off, second)
    marks = [tools.unquote(r.children[0]["list-of-flags"]) for r in rule_ifs(text)]
    assert marks == ["$shipmail-rule-1", "$shipmail-rule-2"]
    models = [first, off, second]
    assert [r.name for r in matched_rules(models, ["$seen", "$shipmail-rule-2"])] == ["b"]
    assert [r.name for r in matched_rules(models, ["$SHIPMAIL-RULE-1", "$shipmail-rule-2"])] == ["a", "b"]
