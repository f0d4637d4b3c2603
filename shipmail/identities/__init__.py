"""shipmail.identities."""
