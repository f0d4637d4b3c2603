"""The DNS check of a domain: what it should publish, what DNS answers, and what follows.

Records (hosts relative to the domain, TTL :data:`TTL`):

* ``ownership``: TXT ``_shipmail`` = ``shipmail-verification=<token>`` (the token is the domain's);
* ``mx``: MX ``@`` -> ``SHIPMAIL_MX_HOST``, priority 10 (any priority counts);
* ``spf``: TXT ``@`` = ``v=spf1 a:<SHIPMAIL_OUTBOUND_HOST> ~all`` (``include:<SHIPMAIL_SPF_INCLUDE>``
  when set); an existing SPF record counts when it has that mechanism; two SPF records are a
  mismatch (RFC 7208 section 4.5: permerror);
* ``dkim``: TXT ``<selector>._domainkey`` = ``v=DKIM1; k=rsa; p=<public key>``, and the optional
  Ed25519 one at the second selector; a record counts when its ``p=`` is the key;
* ``dmarc``: TXT ``_dmarc`` = :data:`DMARC_VALUE`; any other valid DMARC record (``v=DMARC1``
  first, ``p=none|quarantine|reject``) counts too and marks the domain
  ``dmarc_managed_externally`` (the customer's policy is respected, not replaced).

A domain is ``verified`` when ownership and MX hold; SPF, DKIM and DMARC are reported on their own
(``*_verified``). Transitions (:func:`apply`): ``pending``/``degraded`` -> ``verified`` when they
hold; ``verified`` -> ``degraded`` when they no longer do (never for a domain the operator
verified, ``verified_by = operator``, unless DNS verified it since). A check during which the
resolver did not answer changes nothing but ``last_checked_at`` / ``last_check_error``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from shipmail.config import Settings
from shipmail.domains import dkim
from shipmail.domains.dns import Lookup, Resolver
from shipmail.domains.models import Domain
from shipmail.domains.schemas import (
    DomainDnsRecord,
    DomainDnsRecordSet,
    RecordKey,
    RecordStatus,
    VerificationRecords,
    VerificationResult,
)

TTL = 3600
MX_PRIORITY = 10
OWNERSHIP_HOST = "_shipmail"
OWNERSHIP_PREFIX = "shipmail-verification="
DMARC_HOST = "_dmarc"
DMARC_VALUE = "v=DMARC1; p=quarantine; adkim=r; aspf=r"
_SPF = re.compile(r"^v=spf1(\s|$)", re.IGNORECASE)
_DMARC = re.compile(r"^v\s*=\s*DMARC1\s*(;|$)", re.IGNORECASE)


def _tags(value: str) -> dict[str, str]:
    """A DKIM/DMARC tag list (``t=v; t=v``) as a dict; names lower-case, whitespace removed from
    values (RFC 6376 section 3.2 allows folding whitespace inside them)."""
    tags: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, val = part.partition("=")
        if sep and name.strip():
            tags.setdefault(name.strip().lower(), re.sub(r"\s+", "", val))
    return tags


@dataclass
class RecordCheck:
    key: RecordKey
    type: str
    host: str
    value: str | None
    priority: int | None
    status: RecordStatus
    found: list[str]
    required: bool = True

    def wire(self) -> DomainDnsRecord:
        return DomainDnsRecord(
            key=self.key,
            type=self.type,  # type: ignore[arg-type]
            host=self.host,
            value=self.value,
            priority=self.priority,
            ttl=TTL,
            status=self.status,
            found_values=self.found,
            required=self.required,
        )


@dataclass
class CheckResult:
    """One live check of a domain's records."""

    checked_at: datetime
    ownership: RecordCheck
    mx: RecordCheck
    spf: RecordCheck
    dkim: RecordCheck
    dkim_ed25519: RecordCheck
    dmarc: RecordCheck
    dns_errors: list[str] = field(default_factory=list)
    existing_spf: str | None = None
    suggested_spf: str | None = None
    conflicting_mx: list[str] = field(default_factory=list)
    dmarc_valid: bool = False
    dmarc_exact_match: bool = False
    dmarc_record_value: str | None = None

    @property
    def records(self) -> list[RecordCheck]:
        return [self.ownership, self.mx, self.spf, self.dkim, self.dkim_ed25519, self.dmarc]

    @property
    def dns_error(self) -> str | None:
        return "; ".join(dict.fromkeys(self.dns_errors)) or None

    @property
    def holds(self) -> bool:
        """Ownership and MX verified: what makes a domain ``verified``."""
        return self.ownership.status == "verified" and self.mx.status == "verified"

    @property
    def all_verified(self) -> bool:
        return all(r.status == "verified" for r in self.records if r.required)

    @property
    def dmarc_managed_externally(self) -> bool:
        return self.dmarc_valid and not self.dmarc_exact_match

    def record_set(self, domain: Domain) -> DomainDnsRecordSet:
        return DomainDnsRecordSet(
            domain_id=domain.id,
            domain_name=domain.name,
            all_verified=self.all_verified,
            checked_at=self.checked_at,
            records=[r.wire() for r in self.records],
            dns_error=self.dns_error,
        )

    def verification(self, domain: Domain) -> VerificationResult:
        v = {r.key: r.status == "verified" for r in self.records if r.required}
        return VerificationResult(
            all_verified=self.all_verified,
            records=VerificationRecords(mx=v["mx"], spf=v["spf"], dkim=v["dkim"], dmarc=v["dmarc"]),
            outbound_verified=v["spf"] and v["dkim"],
            outbound_error=bool(self.dns_errors),
            existing_spf=self.existing_spf,
            suggested_spf=self.suggested_spf,
            conflicting_mx=self.conflicting_mx,
            dmarc_valid=self.dmarc_valid,
            dmarc_exact_match=self.dmarc_exact_match,
            dmarc_record_value=self.dmarc_record_value,
            dmarc_managed_externally=self.dmarc_managed_externally,
            status=domain.status,  # type: ignore[arg-type]
            ownership=v["ownership"],
            dns_error=self.dns_error,
        )


def spf_mechanism(settings: Settings) -> str:
    """The mechanism our SPF record needs: ``include:<spf_include>`` or ``a:<outbound_host>``."""
    return f"include:{settings.spf_include}" if settings.spf_include else f"a:{settings.outbound_host}"


def _has_mechanism(record: str, mechanism: str) -> bool:
    wanted = mechanism.lower()
    return any(term.lower().lstrip("+") == wanted for term in record.split()[1:])


def _suggest_spf(existing: str | None, mechanism: str) -> str:
    if existing is None:
        return f"v=spf1 {mechanism} ~all"
    terms = existing.split()
    if _has_mechanism(existing, mechanism):
        return existing
    for i, term in enumerate(terms):
        if term.lower().lstrip("+-~?") == "all" or term.lower().startswith("redirect="):
            return " ".join([*terms[:i], mechanism, *terms[i:]])
    return " ".join([*terms, mechanism])


def _status(lookup: Lookup, matched: bool) -> RecordStatus:
    if lookup.error is not None:
        return "dns_unavailable"
    if not lookup.values:
        return "not_found"
    return "verified" if matched else "mismatch"


async def check(domain: Domain, settings: Settings, clock: Callable[[], datetime]) -> CheckResult:
    """Look up every record of ``domain`` (concurrently, each bounded by the resolver's timeout).
    Read-only: changes nothing in ``domain``."""
    resolver = Resolver(settings.dns_resolver, settings.dns_timeout)
    name = domain.name
    rsa_selector, ed_selector = settings.dkim_selector, settings.dkim_ed25519_selector
    ownership_l, (mx_values, mx_error), apex_l, dkim_l, ed_l, dmarc_l = await asyncio.gather(
        resolver.txt(f"{OWNERSHIP_HOST}.{name}"),
        resolver.mx(name),
        resolver.txt(name),
        resolver.txt(f"{rsa_selector}._domainkey.{name}"),
        resolver.txt(f"{ed_selector}._domainkey.{name}"),
        resolver.txt(f"{DMARC_HOST}.{name}"),
    )
    errors = [e for e in (ownership_l.error, mx_error, apex_l.error, dkim_l.error, ed_l.error, dmarc_l.error) if e]

    token_value = f"{OWNERSHIP_PREFIX}{domain.ownership_token}"
    ownership = RecordCheck(
        "ownership",
        "TXT",
        OWNERSHIP_HOST,
        token_value,
        None,
        _status(ownership_l, token_value in [v.strip() for v in ownership_l.values]),
        ownership_l.values,
    )

    mx_lookup = Lookup([str(v) for v in mx_values], mx_error)
    exchanges = [v.exchange for v in mx_values]
    mx = RecordCheck(
        "mx",
        "MX",
        "@",
        settings.mx_host,
        MX_PRIORITY,
        _status(mx_lookup, settings.mx_host in exchanges),
        mx_lookup.values,
    )

    mechanism = spf_mechanism(settings)
    spf_records = [v for v in apex_l.values if _SPF.match(v.strip())]
    existing_spf = spf_records[0].strip() if len(spf_records) == 1 else None
    spf_ok = existing_spf is not None and _has_mechanism(existing_spf, mechanism)
    spf = RecordCheck(
        "spf",
        "TXT",
        "@",
        _suggest_spf(existing_spf, mechanism),
        None,
        _status(Lookup(spf_records, apex_l.error), spf_ok),
        spf_records,
    )

    def dkim_check(lookup: Lookup, selector: str, public: str | None, algorithm: str, required: bool) -> RecordCheck:
        found = [v for v in lookup.values if "p=" in v.replace(" ", "")] or lookup.values
        matched = public is not None and any(_tags(v).get("p") == public for v in lookup.values)
        value = dkim.record_value(public, algorithm=algorithm) if public else None
        status: RecordStatus = "pending" if public is None and lookup.error is None else _status(lookup, matched)
        return RecordCheck("dkim", "TXT", f"{selector}._domainkey", value, None, status, found, required)

    rsa_check = dkim_check(dkim_l, rsa_selector, domain.dkim_public_key, "rsa", True)
    ed_check = dkim_check(ed_l, ed_selector, domain.dkim_ed25519_public_key, "ed25519", False)

    dmarc_records = [v.strip() for v in dmarc_l.values if _DMARC.match(v.strip())]
    dmarc_value = dmarc_records[0] if len(dmarc_records) == 1 else None
    dmarc_tags = _tags(dmarc_value) if dmarc_value else {}
    dmarc_valid = dmarc_value is not None and dmarc_tags.get("p", "").lower() in ("none", "quarantine", "reject")
    dmarc_exact = dmarc_value is not None and dmarc_tags == _tags(DMARC_VALUE)
    dmarc = RecordCheck(
        "dmarc",
        "TXT",
        DMARC_HOST,
        dmarc_value if dmarc_valid and not dmarc_exact else DMARC_VALUE,
        None,
        _status(Lookup(dmarc_records or dmarc_l.values, dmarc_l.error), dmarc_valid),
        dmarc_l.values,
    )

    return CheckResult(
        checked_at=clock(),
        ownership=ownership,
        mx=mx,
        spf=spf,
        dkim=rsa_check,
        dkim_ed25519=ed_check,
        dmarc=dmarc,
        dns_errors=errors,
        existing_spf=existing_spf,
        suggested_spf=None if spf_ok else _suggest_spf(existing_spf, mechanism),
        conflicting_mx=[e for e in exchanges if e != settings.mx_host],
        dmarc_valid=dmarc_valid,
        dmarc_exact_match=dmarc_exact,
        dmarc_record_value=dmarc_value,
    )


Transition = str | None  # "domain.verified", "domain.verification_failed" or None


def apply(domain: Domain, result: CheckResult, *, explicit: bool) -> Transition:
    """Persist ``result`` into ``domain`` (the caller commits); the event the change calls for:
    ``domain.verified`` on becoming verified, ``domain.verification_failed`` on becoming degraded
    or when an ``explicit`` check (``verifyDomain``) of an unverified domain fails."""
    domain.last_checked_at = result.checked_at
    if result.dns_errors:
        # The resolver did not answer everything: nothing is known to have changed.
        domain.last_check_error = (result.dns_error or "")[:500]
        return None
    domain.last_check_error = None
    domain.ownership_verified = result.ownership.status == "verified"
    domain.mx_verified = result.mx.status == "verified"
    domain.spf_verified = result.spf.status == "verified"
    domain.dkim_verified = result.dkim.status == "verified"
    domain.dkim_ed25519_verified = result.dkim_ed25519.status == "verified"
    domain.dmarc_verified = result.dmarc.status == "verified"
    domain.dmarc_managed_externally = result.dmarc_managed_externally
    domain.updated_at = result.checked_at
    if result.holds:
        domain.verified_by = "dns"
        if domain.status != "verified":
            domain.status = "verified"
            domain.verified_at = result.checked_at
            return "domain.verified"
        return None
    if domain.status == "verified":
        if domain.verified_by == "operator":
            return None
        domain.status = "degraded"
        return "domain.verification_failed"
    return "domain.verification_failed" if explicit else None
