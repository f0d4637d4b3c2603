"""Mailbox imports: mbox, ZIP of ``.eml``, single ``.eml`` and IMAP sources into a mailbox."""
