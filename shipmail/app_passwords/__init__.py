"""App passwords: revocable IMAP/JMAP credentials of one mailbox (Shipmail
``/v1/mailboxes/{id}/app-passwords``)."""
