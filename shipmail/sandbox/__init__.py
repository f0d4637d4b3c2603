"""shipmail.sandbox."""
