"""Wire models of Shipmail's ``/v1/domains`` (the create request, the ``Domain`` object, its list).

Source: Shipmail ``createDomain``, ``listDomains``, ``getDomain``, ``deleteDomain``. DNS
verification does not exist here yet: every ``*_verified`` flag follows ``status == "verified"``
(set by the operator), and outbound sending is never verified.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shipmail.domains.models import Domain as DomainRow
from shipmail.http.schemas import Pagination, Request, Wire


class CreateDomainRequest(Request):
    name: str = Field(min_length=1, max_length=253, description="Domain name (e.g. example.com).")


class Domain(Wire):
    object: Literal["domain"] = "domain"
    id: str
    name: str
    status: Literal["pending", "verifying", "verified", "failed", "degraded"]
    managed_by: Literal["external", "shipmail"] = "external"
    dns_provider: str | None = None
    mx_verified: bool
    spf_verified: bool
    dkim_verified: bool
    dmarc_verified: bool
    dmarc_managed_externally: bool = False
    outbound_verified: bool
    catch_all_mailbox_id: str | None = None
    verified_at: datetime | None
    created_at: datetime
    updated_at: datetime
    registration: None = None

    @classmethod
    def of(cls, row: DomainRow) -> Domain:
        """The wire form of a ``domains`` row."""
        verified = row.status == "verified"
        return cls(
            id=row.id,
            name=row.name,
            status=row.status,  # type: ignore[arg-type]
            mx_verified=verified,
            spf_verified=verified,
            dkim_verified=verified,
            dmarc_verified=verified,
            outbound_verified=False,
            verified_at=row.verified_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class DomainList(Wire):
    data: list[Domain]
    pagination: Pagination
