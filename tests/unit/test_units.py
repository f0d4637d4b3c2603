"""Small focused tests of the building blocks: scopes, key material, passwords, cursors, ids and
domain names."""

from __future__ import annotations

import re

import pytest

from shipmail.auth import keys
from shipmail.auth.scopes import Scope, grants, parse_scopes
from shipmail.domains.service import normalize_domain_name
from shipmail.http.cursors import CursorCodec
from shipmail.http.errors import ValidationFailed
from shipmail.ids import has_prefix, new_id
from shipmail.mailboxes import passwords

# --- scopes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("required", list(Scope))
def test_star_grants_every_scope(required: Scope) -> None:
    assert grants(["*"], required)


@pytest.mark.parametrize("resource", ["domains", "mailboxes", "messages", "mailbox_rules"])
def test_write_implies_read_but_not_the_reverse(resource: str) -> None:
    read, write = Scope(f"{resource}:read"), Scope(f"{resource}:write")
    assert grants([write.value], read)
    assert grants([write.value], write)
    assert grants([read.value], read)
    assert not grants([read.value], write)


def test_scopes_do_not_leak_across_resources() -> None:
    assert not grants(["domains:write"], Scope.MAILBOXES_READ)
    assert not grants(["domains:read"], Scope.MAILBOXES_READ)
    assert not grants(["mailboxes:write"], Scope.MAILBOX_RULES_READ)
    assert not grants([], Scope.DOMAINS_READ)
    assert not grants(["domains"], Scope.DOMAINS_READ)
    assert grants(["mailboxes:read", "domains:write"], Scope.DOMAINS_READ)


def test_parse_scopes_accepts_repeats_commas_and_spaces_once_each() -> None:
    assert parse_scopes(["domains:read", "mailboxes:write,domains:read", " * "]) == [
        Scope.DOMAINS_READ,
        Scope.MAILBOXES_WRITE,
        Scope.ALL,
    ]
    assert parse_scopes([]) == []


@pytest.mark.parametrize("bad", ["domains:admin", "domain:read", "DOMAINS:READ", "**", "read", "domains:read:x"])
def test_parse_scopes_rejects_unknown_ones_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown scope") as info:
        parse_scopes(["domains:read", bad])
    assert repr(bad) in str(info.value)


# --- API key material ---------------------------------------------------------------------------


def test_generated_keys_have_the_documented_shape() -> None:
    generated = {keys.generate_key() for _ in range(50)}
    assert len(generated) == 50
    for key in generated:
        assert re.fullmatch(r"sm_live_[A-Za-z0-9]{40}", key)
        assert keys.looks_like_key(key)
        assert keys.display_prefix(key) == key[:12]


def test_digest_depends_on_the_secret_and_the_key() -> None:
    key = keys.generate_key()
    digest = keys.key_digest(b"one", key)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert keys.key_digest(b"one", key) == digest
    assert keys.key_digest(b"two", key) != digest
    assert keys.key_digest(b"one", keys.generate_key()) != digest
    assert key not in digest and key[8:] not in digest


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sm_live_" + "a" * 40, True),
        ("sm_test_" + "A1" * 10, True),
        ("sm_live_" + "a" * 19, False),
        ("sm_live_" + "a" * 129, False),
        ("sm_prod_" + "a" * 40, False),
        ("sm_live_" + "a" * 39 + "-", False),
        ("sm_live_" + "a" * 40 + "\n", False),
        (" sm_live_" + "a" * 40, False),
        ("", False),
        ("Bearer sm_live_" + "a" * 40, False),
    ],
)
def test_looks_like_key(value: str, expected: bool) -> None:
    assert keys.looks_like_key(value) is expected


# --- passwords ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("Ab1defg", "8-128 characters"),
        ("Ab1" + "x" * 126, "8-128 characters"),
        ("alllower1x", "upper-case"),
        ("ALLUPPER1X", "lower-case"),
        ("NoDigitsAtAll", "digit"),
        ("Ab1defgh\x00", "control characters"),
        ("Ab1defgh\t", "control characters"),
        ("Password1", "too common"),
        ("Passw0rd", "too common"),
        ("Qwerty123", "too common"),
        ("Welcome1", "too common"),
    ],
)
def test_policy_refuses_weak_passwords(password: str, problem: str) -> None:
    problems = passwords.policy_problems(password)
    assert any(problem in p for p in problems), problems
    for message in problems:
        assert password not in message
        assert password.strip() not in message


@pytest.mark.parametrize("password", ["Vq7-Lantern-Meadow-42", "Tr0ub4dor&3", "gH4kP9vQ2xLm"])
def test_policy_accepts_strong_passwords(password: str) -> None:
    assert passwords.policy_problems(password) == []


def test_generated_passwords_pass_the_policy() -> None:
    for _ in range(5):
        generated = passwords.generate_password()
        assert len(generated) == 24
        assert passwords.policy_problems(generated) == []


def test_hash_and_verify_round_trip() -> None:
    hashed = passwords.hash_password("Vq7-Lantern-Meadow-42")
    assert hashed.startswith("$argon2id$")
    assert "Vq7-Lantern-Meadow-42" not in hashed
    assert passwords.verify_password(hashed, "Vq7-Lantern-Meadow-42")
    assert not passwords.verify_password(hashed, "Vq7-Lantern-Meadow-43")
    assert not passwords.verify_password("not-a-hash", "Vq7-Lantern-Meadow-42")
    assert not passwords.verify_password("", "Vq7-Lantern-Meadow-42")
    # Salted: the same password hashes differently each time.
    assert passwords.hash_password("Vq7-Lantern-Meadow-42") != hashed


async def test_hash_password_async_gives_an_argon2id_hash() -> None:
    hashed = await passwords.hash_password_async("Vq7-Lantern-Meadow-42")
    assert hashed.startswith("$argon2id$")
    assert passwords.verify_password(hashed, "Vq7-Lantern-Meadow-42")


# --- cursors ------------------------------------------------------------------------------------


@pytest.fixture
def codec() -> CursorCodec:
    return CursorCodec(b"cursor-secret")


def _invalid(codec: CursorCodec, cursor: str, kind: str = "domains", binding: dict[str, str] | None = None) -> None:
    with pytest.raises(ValidationFailed) as info:
        codec.decode(cursor, kind, {"o": "org_1"} if binding is None else binding)
    assert info.value.status_code == 422
    assert info.value.details[0]["field"] == "cursor"


def test_cursor_round_trip(codec: CursorCodec) -> None:
    position = {"t": "2024-05-01T12:00:00+00:00", "i": "dom_abc"}
    cursor = codec.encode("domains", {"o": "org_1"}, position)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}", cursor)
    assert codec.decode(cursor, "domains", {"o": "org_1"}) == position


def test_cursor_with_other_kind_binding_or_secret_is_refused(codec: CursorCodec) -> None:
    cursor = codec.encode("domains", {"o": "org_1"}, {"t": "x", "i": "y"})
    _invalid(codec, cursor, kind="mailboxes")
    _invalid(codec, cursor, binding={"o": "org_2"})
    _invalid(codec, cursor, binding={"o": "org_1", "d": "dom_1"})
    _invalid(CursorCodec(b"another-secret"), cursor)


def test_tampered_cursor_is_refused(codec: CursorCodec) -> None:
    cursor = codec.encode("domains", {"o": "org_1"}, {"t": "x", "i": "y"})
    body, sig = cursor.split(".")
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    _invalid(codec, f"{body}.{flipped}")
    forged_body = CursorCodec(b"cursor-secret").encode("domains", {"o": "org_2"}, {"t": "x", "i": "y"}).split(".")[0]
    _invalid(codec, f"{forged_body}.{sig}")
    _invalid(codec, body + "A." + sig)
    _invalid(codec, cursor + "x")


@pytest.mark.parametrize(
    "garbage", ["", ".", "..", "abc", "a.b.c", "!!!.???", "%%%.abc", "é.abc", "x" * 3000 + ".y", "null.null"]
)
def test_garbage_cursor_is_refused(codec: CursorCodec, garbage: str) -> None:
    _invalid(codec, garbage)


def test_validly_signed_payload_without_position_is_refused(codec: CursorCodec) -> None:
    import base64
    import json

    payload = json.dumps({"k": "domains", "b": {"o": "org_1"}, "p": "not-a-dict"}, separators=(",", ":")).encode()
    body = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    _invalid(codec, f"{body}.{codec._sign(payload)}")
    _invalid(codec, f"{base64.urlsafe_b64encode(b'not json').rstrip(b'=').decode()}.{codec._sign(b'not json')}")


@pytest.mark.parametrize("garbage", ["abcd.é", "abcd.\u2603" * 1])
def test_non_ascii_signature_is_refused(codec: CursorCodec, garbage: str) -> None:
    _invalid(codec, garbage)


# --- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["org", "key", "dom", "mbx"])
def test_new_id_shape(prefix: str) -> None:
    value = new_id(prefix)
    assert re.fullmatch(rf"{prefix}_[0-9a-hjkmnp-tv-z]{{24}}", value)
    assert has_prefix(value, prefix)
    assert not has_prefix(value, "xyz")


def test_new_ids_are_unique() -> None:
    values = {new_id("mbx") for _ in range(5000)}
    assert len(values) == 5000


# --- domain names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  mail.example.org  ", "mail.example.org"),
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.EXAMPLE", "xn--bcher-kva.example"),
        ("123.example", "123.example"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_normalize_valid_domain_names(name: str, normalized: str) -> None:
    assert normalize_domain_name(name) == normalized


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        ".",
        "com",
        "localhost",
        "-bad.com",
        "bad-.com",
        "a..com",
        ".example.com",
        "under_score.com",
        "exa mple.com",
        "*.example.com",
        "1.2.3.4",
        "example.123",
        "a" * 64 + ".com",
        ("a" * 60 + ".") * 5 + "com",
        "ex@mple.com",
        "example.com/path",
    ],
)
def test_normalize_refuses_invalid_domain_names(name: str) -> None:
    with pytest.raises(ValueError):
        normalize_domain_name(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("straße.example", "xn--strae-oqa.example"), ("\u2603.example", None), ("xn--zzzz.com", None)],
)
def test_normalize_follows_idna_2008(name: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            normalize_domain_name(name)
    else:
        assert normalize_domain_name(name) == expected
