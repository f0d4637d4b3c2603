"""Wire model of Shipmail's ``getCapabilities`` (``CapabilitiesResponse``).

Source: the reference ``CapabilitiesResponse`` and the SDK 0.6.7's ``CapabilitiesResponse``
(``constraints.resource_semantics``). Extensions: ``api_version``, ``server_version`` and
``rate_limits`` (each tier with its limit and window).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shipmail.http.schemas import Wire

#: Semantic version of this capability document's contract.
CAPABILITY_VERSION = "1.0.0"


class CapabilityConstraints(Wire):
    mailbox_ids: list[str] | None = Field(
        default=None, description="Mailboxes the key is limited to; null: every mailbox of the organisation."
    )
    domain_ids: list[str] | None = Field(default=None, description="Domains the key is limited to; null: no limit.")
    audience_ids: list[str] | None = Field(default=None, description="Always null here (no audiences).")
    allowed_recipient_addresses: list[str] | None = Field(default=None, description="Always null here (no limit).")
    allowed_recipient_domains: list[str] | None = Field(default=None, description="Always null here (no limit).")
    resource_semantics: Literal["legacy-intersection", "union-v2"] = "union-v2"


class RecipientBudget(Wire):
    unlimited: bool = True
    limit: int | None = None
    used: int = Field(default=0, ge=0)
    remaining: int | None = Field(default=None, ge=0)
    window_hours: Literal[24] = 24


class RateLimitTier(Wire):
    tier: str = Field(description="The x-rate-limit-tier of the operations it counts.")
    limit: int = Field(ge=1, description="Requests allowed per window.")
    window_seconds: int = Field(ge=1)
    per: Literal["api_key", "domain"] = Field(
        description="What one bucket counts: each API key, or each domain (the verification tier)."
    )


class CapabilitiesResponse(Wire):
    capability_version: str = CAPABILITY_VERSION
    scopes: list[str] = Field(
        description="Every scope the key grants: '*' expanded, each X:write with its X:read; sorted."
    )
    constraints: CapabilityConstraints
    allowed_mcp_tools: list[str] = Field(default_factory=list, description="Always empty here (no MCP server).")
    transactional_recipient_budget: RecipientBudget = Field(default_factory=RecipientBudget)
    undo_hold_seconds: int = Field(default=0, ge=0, le=30)
    api_version: str = Field(default="v1", description="Extension: the API's version (path prefix).")
    server_version: str = Field(description="Extension: this server's version.")
    rate_limits: list[RateLimitTier] = Field(description="Extension: the rate-limit tiers and their limits.")
