"""The auto-reply -> Sieve ``vacation`` (RFC 5230) with its date window. To be written."""

from __future__ import annotations

from sievelib.factory import FiltersSet

from shipmail.sieve.model import AutoReply


def add_vacation(fs: FiltersSet, auto_reply: AutoReply | None) -> None:
    """Append the auto-reply to ``fs`` (nothing when None)."""
    if auto_reply is not None:
        raise NotImplementedError("the auto-reply is not compiled yet")
