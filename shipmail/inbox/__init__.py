"""Inbox: a mailbox's messages, threads and attachments over JMAP (``/v1/mailboxes/{id}/inbox/...``).

``routes`` and ``attachment_routes`` (operations), ``service`` (messages and threads),
``attachments`` (blob lookup, download and HTTP range semantics), ``schemas`` (wire models).
"""
