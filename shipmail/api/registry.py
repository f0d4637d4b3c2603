"""Every implemented operation, in the order of the OpenAPI document."""

from __future__ import annotations

from shipmail.api import domains, mailboxes, status
from shipmail.api.routing import Operation

OPERATIONS: list[Operation] = [*status.operations, *domains.operations, *mailboxes.operations]
