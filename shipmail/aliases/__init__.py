"""Mailbox aliases: other addresses on a mailbox's domain whose mail goes into that mailbox."""
