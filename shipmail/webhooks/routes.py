"""Shipmail's ``/v1/webhooks`` operations (scopes ``webhooks:read|write``). Behaviour:
:mod:`shipmail.webhooks.service`; wire models: :mod:`shipmail.webhooks.schemas`."""

from __future__ import annotations

from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.http.schemas import PageQuery, Pagination
from shipmail.webhooks import service
from shipmail.webhooks.schemas import (
    CreatedWebhook,
    CreateWebhookRequest,
    DeliveryListQuery,
    RotateSecretResponse,
    TestWebhookResponse,
    UpdateWebhookRequest,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryDetail,
    WebhookDeliveryList,
    WebhookList,
)

operations: list[Operation] = []
TAGS = ("Webhooks",)


@operation(
    operations,
    "POST",
    "/webhooks",
    operation_id="createWebhook",
    summary="Create a webhook",
    scope=Scope.WEBHOOKS_WRITE,
    tier=Tier.WRITE,
    body=CreateWebhookRequest,
    response=CreatedWebhook,
    status_code=201,
    errors=(401, 403, 413, 422, 429),
    tags=TAGS,
)
async def create_webhook(ctx: Context[CreateWebhookRequest, None]) -> CreatedWebhook:
    """A new endpoint for the given event types. The answer carries its signing `secret`
    (`whsec_...`) this once. The URL must be `https://` and must not point at a loopback,
    private, link-local or metadata address (422 `invalid_url`) unless the operator set
    `SHIPMAIL_WEBHOOK_ALLOW_PRIVATE=1`. Deliveries are signed per Standard Webhooks
    (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`)."""
    row, secret = await service.create(ctx.services, ctx.session, ctx.organization_id, ctx.body)
    return CreatedWebhook(**Webhook.of(row).model_dump(), secret=secret)


@operation(
    operations,
    "GET",
    "/webhooks",
    operation_id="listWebhooks",
    summary="List webhooks",
    scope=Scope.WEBHOOKS_READ,
    tier=Tier.READ,
    query=PageQuery,
    response=WebhookList,
    errors=(401, 403, 422, 429),
    tags=TAGS,
)
async def list_webhooks(ctx: Context[None, PageQuery]) -> WebhookList:
    """The organisation's webhooks in creation order."""
    q = ctx.query
    rows, next_cursor, has_more = await service.list_page(
        ctx.services, ctx.session, ctx.organization_id, q.cursor, q.limit
    )
    return WebhookList(
        data=[Webhook.of(r) for r in rows],
        pagination=Pagination(next_cursor=next_cursor, has_more=has_more, limit=q.limit),
    )


@operation(
    operations,
    "GET",
    "/webhooks/{id}",
    operation_id="getWebhook",
    summary="Get a webhook",
    scope=Scope.WEBHOOKS_READ,
    tier=Tier.READ,
    response=Webhook,
    errors=(401, 403, 404, 429),
    tags=TAGS,
)
async def get_webhook(ctx: Context[None, None]) -> Webhook:
    """One webhook; 404 for unknown ids and other organisations' alike. The secret is never shown."""
    return Webhook.of(await service.get(ctx.session, ctx.organization_id, ctx.path["id"]))


@operation(
    operations,
    "PATCH",
    "/webhooks/{id}",
    operation_id="updateWebhook",
    summary="Update a webhook",
    scope=Scope.WEBHOOKS_WRITE,
    tier=Tier.WRITE,
    body=UpdateWebhookRequest,
    response=Webhook,
    errors=(401, 403, 404, 413, 422, 429),
    tags=TAGS,
)
async def update_webhook(ctx: Context[UpdateWebhookRequest, None]) -> Webhook:
    """Change the URL, event types, description (null clears it) or `active`. A webhook disabled
    after 3 days of failed deliveries is re-enabled with `active: true`."""
    return Webhook.of(await service.update(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"], ctx.body))


@operation(
    operations,
    "DELETE",
    "/webhooks/{id}",
    operation_id="deleteWebhook",
    summary="Delete a webhook",
    scope=Scope.WEBHOOKS_WRITE,
    tier=Tier.WRITE,
    status_code=204,
    errors=(401, 403, 404, 429),
    tags=TAGS,
)
async def delete_webhook(ctx: Context[None, None]) -> None:
    """Remove the webhook and its deliveries; pending attempts are dropped."""
    await service.delete(ctx.session, ctx.organization_id, ctx.path["id"])


@operation(
    operations,
    "POST",
    "/webhooks/{id}/rotate-secret",
    operation_id="rotateWebhookSecret",
    summary="Rotate a webhook's signing secret",
    scope=Scope.WEBHOOKS_WRITE,
    tier=Tier.WRITE,
    response=RotateSecretResponse,
    errors=(401, 403, 404, 429),
    tags=TAGS,
)
async def rotate_secret(ctx: Context[None, None]) -> RotateSecretResponse:
    """A new secret, shown this once. For 24 hours every delivery carries two signatures in
    `webhook-signature` (space-separated): one with the new secret, one with the old."""
    secret, expires = await service.rotate(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"])
    return RotateSecretResponse(secret=secret, previous_secret_expires_at=expires)


@operation(
    operations,
    "POST",
    "/webhooks/{id}/test",
    operation_id="testWebhook",
    summary="Send a test event",
    scope=Scope.WEBHOOKS_WRITE,
    tier=Tier.WRITE,
    response=TestWebhookResponse,
    status_code=202,
    errors=(401, 403, 404, 429),
    tags=TAGS,
)
async def test_webhook(ctx: Context[None, None]) -> TestWebhookResponse:
    """Queue a `webhook.test` delivery to the endpoint (delivered like any other)."""
    return TestWebhookResponse(event_id=await service.send_test(ctx.session, ctx.organization_id, ctx.path["id"]))


@operation(
    operations,
    "GET",
    "/webhooks/{id}/deliveries",
    operation_id="listWebhookDeliveries",
    summary="List webhook deliveries",
    scope=Scope.WEBHOOKS_READ,
    tier=Tier.READ,
    query=DeliveryListQuery,
    response=WebhookDeliveryList,
    errors=(401, 403, 404, 422, 429),
    tags=TAGS,
)
async def list_deliveries(ctx: Context[None, DeliveryListQuery]) -> WebhookDeliveryList:
    """The webhook's deliveries in creation order, optionally by `status` and `event_type`."""
    q = ctx.query
    rows, next_cursor, has_more = await service.list_deliveries(
        ctx.services,
        ctx.session,
        ctx.organization_id,
        ctx.path["id"],
        status=q.status,
        event_type=q.event_type,
        cursor=q.cursor,
        limit=q.limit,
    )
    return WebhookDeliveryList(
        data=[WebhookDelivery.of(r) for r in rows],
        pagination=Pagination(next_cursor=next_cursor, has_more=has_more, limit=q.limit),
    )


@operation(
    operations,
    "GET",
    "/webhooks/{id}/deliveries/{deliveryId}",
    operation_id="getWebhookDelivery",
    summary="Get a webhook delivery",
    scope=Scope.WEBHOOKS_READ,
    tier=Tier.READ,
    response=WebhookDeliveryDetail,
    errors=(401, 403, 404, 429),
    tags=TAGS,
)
async def get_delivery(ctx: Context[None, None]) -> WebhookDeliveryDetail:
    """One delivery with the exact envelope sent and its next attempt time."""
    row = await service.get_delivery(ctx.session, ctx.organization_id, ctx.path["id"], ctx.path["deliveryId"])
    return WebhookDeliveryDetail.of(row)


@operation(
    operations,
    "POST",
    "/webhooks/{id}/deliveries/{deliveryId}/replay",
    operation_id="replayWebhookDelivery",
    summary="Replay a webhook delivery",
    scope=Scope.WEBHOOKS_WRITE,
    tier=Tier.WRITE,
    response=WebhookDeliveryDetail,
    status_code=201,
    errors=(401, 403, 404, 409, 429),
    tags=TAGS,
)
async def replay_delivery(ctx: Context[None, None]) -> WebhookDeliveryDetail:
    """Send the delivery's envelope again as a new delivery with the same `webhook-id` header
    (receivers de-duplicate on it); 409 for a delivery older than 30 days."""
    row = await service.replay(ctx.session, ctx.organization_id, ctx.path["id"], ctx.path["deliveryId"])
    return WebhookDeliveryDetail.of(row)
