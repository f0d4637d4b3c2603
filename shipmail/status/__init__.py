"""shipmail.status."""
