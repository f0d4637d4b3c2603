"""shipmail.mailboxes."""
