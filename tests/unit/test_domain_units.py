"""Pure parts of the domains feature: the resolver setting, SPF suggestions, DKIM tag parsing,
the encryption of DKIM keys, DKIM signing with keys of both types."""

from __future__ import annotations

import dkim as dkimpy
import pydantic
import pytest

from shipmail.config import Settings, resolver_address
from shipmail.domains import crypto, dkim
from shipmail.domains.verification import _suggest_spf, _tags


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("10.0.0.53", ("10.0.0.53", 53)),
        ("[::1]:5300", ("::1", 5300)),
        ("[2001:db8::53]", ("2001:db8::53", 53)),
        ("2001:db8::53", ("2001:db8::53", 53)),
        (" resolver.internal:53 ", ("resolver.internal", 53)),
    ],
)
def test_resolver_address(value: str, expected: tuple[str, int]) -> None:
    assert resolver_address(value) == expected


@pytest.mark.parametrize("value", [":53", "host:port", "host:0", "host:70000", "[::1", "[::1]x"])
def test_bad_resolver_addresses_are_refused_at_startup(value: str, tmp_path: object) -> None:
    with pytest.raises(ValueError):
        resolver_address(value)
    with pytest.raises(pydantic.ValidationError):
        Settings.from_env(data_dir=str(tmp_path), secret_key=b"k", dns_resolver=value)


def test_settings_defaults() -> None:
    s = Settings.from_env(data_dir="/tmp/shipmail-units", secret_key=b"k", mx_host="MX.Example.NET.")
    assert s.mx_host == "mx.example.net" and s.outbound_host == "mx.example.net"
    assert s.dns_resolver is None and s.dns_timeout == 2.0 and s.ratelimit_verification == "1/minute"
    assert (s.dkim_selector, s.dkim_ed25519_selector) == ("shipmail", "shipmail-ed25519")
    with pytest.raises(pydantic.ValidationError):
        Settings.from_env(data_dir="/tmp/shipmail-units", secret_key=b"k", dkim_selector="bad selector")


@pytest.mark.parametrize(
    ("existing", "suggested"),
    [
        (None, "v=spf1 a:out.example ~all"),
        ("v=spf1 -all", "v=spf1 a:out.example -all"),
        ("v=spf1 include:_spf.google.com ?all", "v=spf1 include:_spf.google.com a:out.example ?all"),
        ("v=spf1 mx redirect=_spf.example.org", "v=spf1 mx a:out.example redirect=_spf.example.org"),
        ("v=spf1 mx", "v=spf1 mx a:out.example"),
        ("v=spf1 +a:OUT.example ~all", "v=spf1 +a:OUT.example ~all"),
    ],
)
def test_spf_suggestion_keeps_the_customers_mechanisms(existing: str | None, suggested: str) -> None:
    assert _suggest_spf(existing, "a:out.example") == suggested


def test_tag_lists() -> None:
    assert _tags("v=DKIM1; k=rsa;\r\n p=MIIB IjAN ;") == {"v": "DKIM1", "k": "rsa", "p": "MIIBIjAN"}
    assert _tags("V=DMARC1;P=reject; p=none") == {"v": "DMARC1", "p": "reject"}  # first one counts


def test_encryption_round_trip_and_binding() -> None:
    stored = crypto.encrypt(b"secret", b"private bytes", bound_to="dom_1")
    assert b"private" not in stored.encode() and stored != crypto.encrypt(b"secret", b"private bytes", bound_to="dom_1")
    assert crypto.decrypt(b"secret", stored, bound_to="dom_1") == b"private bytes"
    for secret, bound, value in (
        (b"other", "dom_1", stored),
        (b"secret", "dom_2", stored),
        (b"secret", "dom_1", stored[:-4] + "AAAA"),
        (b"secret", "dom_1", "v2." + stored[3:]),
        (b"secret", "dom_1", "v1.!!!"),
    ):
        with pytest.raises(crypto.UndecryptableSecret):
            crypto.decrypt(secret, value, bound_to=bound)


def test_sign_with_both_key_types_and_verify() -> None:
    rsa_pair, ed_pair = dkim.generate_rsa(), dkim.generate_ed25519()
    published = {
        b"s1._domainkey.example.com.": dkim.record_value(rsa_pair.public_b64).encode(),
        b"s2._domainkey.example.com.": dkim.record_value(ed_pair.public_b64, algorithm="ed25519").encode(),
    }

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        return published.get(name)

    message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: x\r\n\r\nbody\r\n"
    signed = dkim.sign(message, domain="example.com", selector="s1", private_key_pem=rsa_pair.private_pem)
    signed = dkim.sign(signed, domain="example.com", selector="s2", private_key_pem=ed_pair.private_pem)
    checker = dkimpy.DKIM(signed)
    assert checker.verify(0, dnsfunc=dnsfunc) and checker.verify(1, dnsfunc=dnsfunc)
    with pytest.raises(dkimpy.DKIMException):
        dkim.sign(
            b"To: b@example.org\r\n\r\nno from\r\n",
            domain="example.com",
            selector="s1",
            private_key_pem=rsa_pair.private_pem,
        )
