"""Placeholder: operations are declared here by the module's owner."""

from __future__ import annotations

from shipmail.api.routing import Operation

operations: list[Operation] = []
