"""Mailgun's legacy Mailboxes API, wire-compatible, over our mailbox service (a migration path).

Served under ``/v3/{domain}/mailboxes`` and ``/v2/{domain}/mailboxes`` (the same), authenticated
with HTTP Basic ``api:<our API key>``; the adapter in :mod:`shipmail.mailgun.routes` only
translates the wire (forms, Mailgun's shapes and ``{"message": ...}`` errors) and calls
:mod:`shipmail.mailboxes.service`.
"""
