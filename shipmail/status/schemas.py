"""Wire models of Shipmail's ``GET /v1/status`` (``getStatus``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shipmail.http.schemas import Wire


class ComponentStatus(Wire):
    status: Literal["up", "down"]


class Components(Wire):
    database: ComponentStatus
    mail_server: ComponentStatus


class StatusResponse(Wire):
    status: Literal["operational", "maintenance", "degraded"] = Field(
        description="operational when every component is up; degraded (HTTP 503) otherwise."
    )
    version: str
    time: datetime
    request_id: str
    components: Components
