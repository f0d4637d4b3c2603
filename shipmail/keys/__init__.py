"""shipmail.keys."""
