"""Mailbox forwarding: destinations confirmed by a link sent to them, compiled into the mailbox's
delivery script (Shipmail ``/v1/mailboxes/{id}/forwarding``)."""
