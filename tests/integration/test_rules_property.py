"""Property tests of rule values on the real Cyrus: whatever text a client puts in a condition
(quotes, backslashes, newlines, ``*/``, ``${``, ``*``/``?``, any Unicode, up to 256 characters)
either is refused with 422 before any script is built (characters no header can carry) or gives a
script the server validates (``SieveScript/validate`` over JMAP), and a ``subject_contains`` rule
with it matches the value literally at delivery (the message is moved; a near miss where only
wildcard characters differ is not).

Deterministic (``derandomize``) and small: the validation property is two JMAP requests per
example; the delivery property costs a PUT and one or two LMTP deliveries per example.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st

from shipmail.db.types import STORAGE_CONTEXT
from shipmail.delivery.script import ScriptOptions, build_script
from shipmail.http.errors import ValidationFailed
from shipmail.jmap.request import Request
from shipmail.jmap.sieve_script import URN_SIEVE_CYRUS, SieveScriptValidate
from shipmail.rules import schemas
from tests.integration.conftest import ApiEnv
from tests.integration.test_rules import Box, cond, message, rule, to_folder

#: Pieces that have broken Sieve generators, quoting or header matching somewhere.
FRAGMENTS = [
    '"',
    "\\",
    '\\"',
    "\n",
    "\r\n",
    "*/",
    "/*",
    "#",
    "${",
    "${x}",
    "}",
    "{",
    ";",
    "*",
    "?",
    "\t",
    " ",
    "é",
    "e\u0301",
    "🙂",
    "漢",
    "\u2028",
    "\ufeff",
    "\u00a0",
    "=?utf-8?q?x?=",
    "\x00",
    "\x07",
    "\x7f",
    "\x85",
    "\ud800",
    "\udfff",
    "text:\r\n.\r\n",
    "i;ascii-casemap",
    ":contains",
]

values = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=256),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=256),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), min_size=1, max_size=40)
    .map("".join)
    .filter(lambda v: 1 <= len(v) <= 256),
)


def settings(max_examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture
def box(api: ApiEnv) -> Iterator[Box]:
    yield Box(api, local="prop")


def _portal(api: ApiEnv, fn: Any, *args: Any) -> Any:
    return api.client.portal.call(fn, *args)  # type: ignore[union-attr]


def _all_types(value: str, folder_id: str) -> list[dict[str, Any]]:
    return [
        rule(
            *(cond(kind, value) for kind in schemas.VALUE_TYPES),
            match_mode="any",
            actions=[to_folder(folder_id)],
            name=value[:120],
        )
    ]


def _refused(rules: list[dict[str, Any]]) -> bool:
    try:
        schemas.UpdateMailboxRulesRequest.model_validate({"rules": rules})
    except ValidationFailed:
        return True
    return False


@settings(max_examples=40)
@given(value=values)
@example(value='"; discard; "' + "\\")
@example(value="*/ ${x} /* \t tab")
@example(value="\U0001f600" * 256)
def test_any_value_is_refused_or_gives_a_script_the_server_validates(box: Box, value: str) -> None:
    api = box.api
    svc = api.client.app.state.services  # type: ignore[attr-defined]
    rules = _all_types(value, "fld_x")
    if schemas.bad_characters(value):
        assert _refused(rules)
        r = box.put(*rules)
        assert r.status_code == 422, r.text
        return
    assert not _refused(rules)
    stored = [
        dict(r, actions=[{"type": "move", "target": {"kind": "custom", "folder_id": "fld_x", "fallback_name": value}}])
        for r in rules
    ]
    text = build_script(
        ScriptOptions(
            server=api.cyrus.server.delivery_sieve(),
            rules=schemas.RULES.validate_python(stored, context=STORAGE_CONTEXT),
        )
    )

    async def validate() -> dict[str, Any]:
        blob = await svc.jmap.upload(box.address, text.encode("utf-8"), "application/sieve")
        request = Request(capabilities=(URN_SIEVE_CYRUS,))
        call = request.add(SieveScriptValidate(blob_id=blob))
        results = await svc.jmap.call(box.address, request)
        return dict(results.get(call, what="validate"))

    answer = _portal(api, validate)
    assert answer.get("error") is None, (answer, text)


def _near_miss(value: str) -> str | None:
    """``value`` with its wildcard characters replaced (None if it has none): :contains must not
    treat ``*``/``?`` as wildcards."""
    if "*" not in value and "?" not in value:
        return None
    return value.replace("*", "X").replace("?", "Y")


@settings(max_examples=6)
@given(value=values)
@example(value='quote " and backslash \\ and */ and ${var} and #')
@example(value="a*b?c")
@example(value="é漢🙂 e\u0301 \u00a0nbsp \u2028 \ufeff")
@example(value="  spaces  around\tand a tab  ")
@example(value="x" * 256)
@example(value="\U0001f600" * 256)
@example(value="=?utf-8?q?encoded?=")
@example(value="line\nbreak")
def test_accepted_subject_values_match_literally_at_delivery(box: Box, value: str) -> None:
    if "target" not in box.__dict__:
        box.__dict__["target"] = box.folder("Matched")
    folder = box.__dict__["target"]
    r = box.put(rule(cond("subject_contains", value), actions=[to_folder(folder)]))
    if schemas.bad_characters(value):
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"][0]["field"] == "rules[0].conditions[0].value"
        return
    assert r.status_code == 200, r.text
    raw, mid = message("[" + value + "]", encode=True)
    box.deliver(raw)
    miss = _near_miss(value)
    miss_mid = None
    if miss is not None:
        raw, miss_mid = message("[" + miss + "]", encode=True)
        box.deliver(raw)
    placed = box.placed()
    assert placed[mid][0] == {folder}, value
    if miss_mid is not None:
        assert placed[miss_mid][0] != {folder}, value
