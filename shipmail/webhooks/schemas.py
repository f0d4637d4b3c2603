"""Wire models of Shipmail's ``/v1/webhooks`` (``createWebhook`` ... ``replayWebhookDelivery``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from shipmail.events.schemas import EventType
from shipmail.http.schemas import PageQuery, Pagination, Request, Wire
from shipmail.webhooks.models import Webhook as WebhookRow
from shipmail.webhooks.models import WebhookDelivery as DeliveryRow

DeliveryEventType = Literal[
    "webhook.test",
    "message.received",
    "message.sent",
    "message.delivered",
    "message.bounced",
    "mailbox.rule_matched",
    "domain.verified",
    "domain.verification_failed",
]
DeliveryStatus = Literal["pending", "delivered", "failed"]

#: Longest webhook URL accepted.
MAX_URL_LENGTH = 2048


class CreateWebhookRequest(Request):
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="HTTPS endpoint URL; not a loopback, private, link-local or metadata address.",
        json_schema_extra={"format": "uri"},
    )
    events: list[EventType] = Field(min_length=1, max_length=20, description="Event types to subscribe to.")
    description: str | None = Field(default=None, max_length=500, description="Human-readable description.")


class UpdateWebhookRequest(Request):
    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH, json_schema_extra={"format": "uri"})
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=20)
    description: str | None = Field(default=None, max_length=500, description="null clears it.")
    active: bool | None = Field(
        default=None, description="Whether the webhook is active (true re-enables one disabled after failures)."
    )


class Webhook(Wire):
    object: Literal["webhook"] = "webhook"
    id: str
    url: str
    events: list[str]
    active: bool
    description: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: WebhookRow) -> Webhook:
        return cls(
            id=row.id,
            url=row.url,
            events=list(row.events),
            active=row.active,
            description=row.description,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class CreatedWebhook(Webhook):
    secret: str = Field(description="HMAC signing secret (whsec_...). Only returned at creation time.")


class WebhookList(Wire):
    data: list[Webhook]
    pagination: Pagination


class RotateSecretResponse(Wire):
    secret: str = Field(description="New HMAC signing secret.")
    previous_secret_expires_at: datetime = Field(
        description="When the previous secret stops being used (24 hours); both sign until then."
    )


class TestWebhookResponse(Wire):
    event_id: str = Field(description="ID of the test event.")


class WebhookDelivery(Wire):
    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: str
    event_id: str
    event_type: str
    mode: Literal["live", "test"] = "live"
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def fields_of(cls, row: DeliveryRow) -> dict[str, Any]:
        return {
            "id": row.id,
            "event_id": row.event_id,
            "event_type": row.event_type,
            "status": row.status,
            "attempts": row.attempts,
            "last_status_code": row.last_status_code,
            "last_error": row.last_error,
            "created_at": row.created_at,
            "delivered_at": row.delivered_at,
        }

    @classmethod
    def of(cls, row: DeliveryRow) -> WebhookDelivery:
        return cls(**cls.fields_of(row))


class WebhookDeliveryDetail(WebhookDelivery):
    payload: dict[str, Any] = Field(description="The exact webhook envelope sent to the endpoint.")
    next_attempt_at: datetime | None
    replayed_from_delivery_id: str | None

    @classmethod
    def of(cls, row: DeliveryRow) -> WebhookDeliveryDetail:
        return cls(
            **cls.fields_of(row),
            payload=row.payload,
            next_attempt_at=row.next_attempt_at,
            replayed_from_delivery_id=row.replayed_from_delivery_id,
        )


class WebhookDeliveryList(Wire):
    data: list[WebhookDelivery]
    pagination: Pagination


class DeliveryListQuery(PageQuery):
    status: DeliveryStatus | None = Field(default=None, description="Filter by delivery status.")
    event_type: DeliveryEventType | None = Field(default=None, description="Filter by event type.")
