"""Mailbox exports: a ZIP of a whole mailbox (``createMailboxExport``, ``getMailboxExport``)."""
