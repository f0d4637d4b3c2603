"""Inbox rules -> Sieve (RFC 5228 if/allof/anyof, fileinto, imap4flags). To be written."""

from __future__ import annotations

from sievelib.factory import FiltersSet

from shipmail.sieve.model import Rule


def add_rules(fs: FiltersSet, rules: tuple[Rule, ...]) -> None:
    """Append ``rules`` (enabled ones, by position) to ``fs``."""
    if rules:
        raise NotImplementedError("inbox rules are not compiled yet")
