"""Wire models of Shipmail's ``/v1/domains``: the ``Domain`` object and its list, the create and
update requests, the DNS record set (``getDomainDnsRecords``) and the verification result
(``verifyDomain``).

Source: Shipmail's reference ``Domain``, ``UpdateDomainRequest``, ``DomainDnsRecordSet``,
``DomainDnsRecord`` and ``VerificationResult``. Extensions here, marked as such in their
descriptions: the record key ``ownership`` (the ``_shipmail`` TXT token), the record status
``dns_unavailable`` (the resolver did not answer: the record's presence is unknown), the record
flag ``required``, and ``dns_error`` / ``status`` on the set and the result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shipmail.domains.models import Domain as DomainRow
from shipmail.http.schemas import Pagination, Request, Wire

DomainStatus = Literal["pending", "verifying", "verified", "failed", "degraded"]
RecordStatus = Literal["verified", "not_found", "mismatch", "pending", "dns_unavailable"]
RecordKey = Literal["mx", "spf", "mail_from_mx", "mail_from_spf", "dkim", "dmarc", "ownership"]


class CreateDomainRequest(Request):
    name: str = Field(min_length=1, max_length=253, description="Domain name (e.g. example.com).")


class UpdateDomainRequest(Request):
    catch_all_mailbox_id: str | None = Field(
        max_length=64,
        description=(
            "Mailbox (of this domain and organisation) receiving mail to the domain's unknown "
            "addresses, or null to turn catch-all off (unknown addresses are refused, 550 5.1.1)."
        ),
    )


class Domain(Wire):
    object: Literal["domain"] = "domain"
    id: str
    name: str
    status: DomainStatus = Field(
        description=(
            "pending: not verified yet (publish the records of GET /domains/{id}/dns-records, then "
            "POST /domains/{id}/verification); verified: the ownership TXT record and the MX record "
            "were found; degraded: verified before, but a later check no longer found them."
        )
    )
    managed_by: Literal["external", "shipmail"] = "external"
    dns_provider: str | None = None
    mx_verified: bool
    spf_verified: bool
    dkim_verified: bool
    dmarc_verified: bool = Field(description="Whether the DMARC record was last seen as valid.")
    dmarc_managed_externally: bool = Field(
        description="True if a non-shipmail DMARC record is already published for this domain."
    )
    outbound_verified: bool = Field(description="SPF and DKIM both verified: mail sent from the domain authenticates.")
    catch_all_mailbox_id: str | None = Field(
        description="Mailbox receiving unmatched addresses, or null when catch-all is disabled."
    )
    verified_at: datetime | None
    created_at: datetime
    updated_at: datetime
    registration: None = None

    @classmethod
    def of(cls, row: DomainRow) -> Domain:
        """The wire form of a ``domains`` row (the flags are the last DNS check's findings)."""
        return cls(
            id=row.id,
            name=row.name,
            status=row.status,  # type: ignore[arg-type]
            mx_verified=row.mx_verified,
            spf_verified=row.spf_verified,
            dkim_verified=row.dkim_verified,
            dmarc_verified=row.dmarc_verified,
            dmarc_managed_externally=row.dmarc_managed_externally,
            outbound_verified=row.spf_verified and row.dkim_verified,
            catch_all_mailbox_id=row.catch_all_mailbox_id,
            verified_at=row.verified_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class DomainList(Wire):
    data: list[Domain]
    pagination: Pagination


class DomainDnsRecord(Wire):
    key: RecordKey = Field(description="Which record; ``ownership`` (extension): the _shipmail TXT token.")
    type: Literal["MX", "TXT"]
    host: str = Field(description="DNS host relative to the domain. @ means the root domain.")
    value: str | None = Field(description="Expected value. Null only while the DKIM value is pending.")
    priority: int | None = Field(description="MX priority, or null for TXT records.")
    ttl: int = Field(ge=1, description="Suggested TTL in seconds.")
    status: RecordStatus = Field(
        description=(
            "verified: found as expected; not_found: no such record; mismatch: a record is there "
            "with another value (see found_values); dns_unavailable (extension): the resolver did "
            "not answer, so whether the record exists is unknown."
        )
    )
    found_values: list[str] = Field(description="Values observed during the live DNS check.")
    required: bool = Field(
        default=True,
        description=(
            "Extension: whether all_verified needs this record (the Ed25519 DKIM key is optional; "
            "mail is signed with it too once it is published)."
        ),
    )


class DomainDnsRecordSet(Wire):
    object: Literal["dns_record_set"] = "dns_record_set"
    domain_id: str
    domain_name: str
    all_verified: bool = Field(description="Every required record is verified.")
    checked_at: datetime
    records: list[DomainDnsRecord]
    dns_error: str | None = Field(
        default=None, description="Extension: why some lookups got no answer (null when the resolver answered all)."
    )


class VerificationRecords(Wire):
    mx: bool
    spf: bool
    dkim: bool
    dmarc: bool


class VerificationResult(Wire):
    all_verified: bool
    records: VerificationRecords = Field(description="Verification status for each DNS record type.")
    outbound_verified: bool
    outbound_error: bool = Field(description="True when the check could not complete (the resolver did not answer).")
    existing_spf: str | None
    suggested_spf: str | None
    conflicting_mx: list[str]
    dmarc_valid: bool = Field(description="Whether a DMARC record exists and parses as a valid policy.")
    dmarc_exact_match: bool = Field(
        description="Whether the published DMARC record exactly matches shipmail's recommended record."
    )
    dmarc_record_value: str | None = Field(description="The DMARC TXT record currently published, if any.")
    dmarc_managed_externally: bool = Field(
        description="True if a non-shipmail DMARC record is already published for this domain."
    )
    status: DomainStatus = Field(description="Extension: the domain's status after this check.")
    ownership: bool = Field(description="Extension: whether the ownership TXT record was found.")
    dns_error: str | None = Field(
        default=None, description="Extension: why some lookups got no answer; the status is then left as it was."
    )
