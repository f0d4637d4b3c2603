"""Sieve (RFC 5228) scripts generated for mailboxes: see :mod:`shipmail.sieve.compiler`."""
