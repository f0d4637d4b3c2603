"""Wire models of Shipmail's ``GET /v1/status`` (``getStatus``): the reference's fields (``status``,
``version``, ``time``, ``request_id``) and ``components``, one entry per part of the service."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shipmail.http.schemas import Wire


class ComponentStatus(Wire):
    status: Literal["up", "down"]


class Components(Wire):
    database: ComponentStatus = Field(description="The API's database answers SELECT 1.")
    jmap: ComponentStatus = Field(description="The mail server's JMAP service (every mail read and change).")
    imap: ComponentStatus = Field(description="The mail server's IMAP service (owners' logins, provisioning).")
    lmtp: ComponentStatus = Field(description="The mail server's LMTP service (inbound mail, sandbox deliveries).")
    login_checker: ComponentStatus = Field(description="The service that checks mailbox owners' passwords.")


class StatusResponse(Wire):
    status: Literal["operational", "maintenance", "degraded"] = Field(
        description="operational when every component is up; degraded (HTTP 503, Retry-After) otherwise."
    )
    version: str
    time: datetime
    request_id: str
    components: Components
