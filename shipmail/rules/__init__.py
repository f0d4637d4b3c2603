"""shipmail.rules."""
