"""The spam threshold -> Sieve (score header at or above the threshold: file into Junk). To be written."""

from __future__ import annotations

from sievelib.factory import FiltersSet

from shipmail.sieve.model import SpamFilter


def add_spam(fs: FiltersSet, spam: SpamFilter | None) -> None:
    """Append the spam rule to ``fs`` (nothing when None)."""
    if spam is not None:
        raise NotImplementedError("the spam threshold is not compiled yet")
