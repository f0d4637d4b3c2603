"""``GET /v1/capabilities``: the calling key's effective scopes, constraints and rate limits.
Wire model: :mod:`shipmail.capabilities.schemas`."""

from __future__ import annotations

from limits import parse

from shipmail import __version__
from shipmail.auth.scopes import Scope, granted
from shipmail.capabilities.schemas import CapabilitiesResponse, CapabilityConstraints, RateLimitTier
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation

operations: list[Operation] = []


@operation(
    operations,
    "GET",
    "/capabilities",
    operation_id="getCapabilities",
    summary="Get effective API capabilities",
    scope=None,
    authenticated=True,
    tier=Tier.READ,
    response=CapabilitiesResponse,
    errors=(401, 429),
    tags=("Capabilities",),
)
async def get_capabilities(ctx: Context[None, None]) -> CapabilitiesResponse:
    """Any valid key, whatever its scopes: the scopes it grants (``*`` expanded to every scope,
    ``X:write`` implying ``X:read``), its constraints (``mailbox_ids`` when the key is limited to
    some mailboxes), every rate-limit tier with its limit, and the API's version."""
    assert ctx.principal is not None
    known = {s.value for s in Scope} - {Scope.ALL.value}
    scopes = sorted(s for s in granted(ctx.principal.scopes) if s in known)
    # Per-mailbox keys (the credentials feature) carry their mailbox ids on the Principal; a key
    # without that attribute, or with None, is not limited.
    mailbox_ids = getattr(ctx.principal, "mailbox_ids", None)
    settings = ctx.services.settings
    tiers = {
        Tier.READ: settings.ratelimit_read,
        Tier.WRITE: settings.ratelimit_write,
        Tier.VERIFICATION: settings.ratelimit_verification,
    }
    rate_limits = []
    for tier, value in tiers.items():
        item = parse(value)
        rate_limits.append(
            RateLimitTier(
                tier=tier.value,
                limit=item.amount,
                window_seconds=item.get_expiry(),
                per="domain" if tier is Tier.VERIFICATION else "api_key",
            )
        )
    return CapabilitiesResponse(
        scopes=scopes,
        constraints=CapabilityConstraints(mailbox_ids=list(mailbox_ids) if mailbox_ids is not None else None),
        server_version=__version__,
        rate_limits=rate_limits,
    )
