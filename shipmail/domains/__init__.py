"""shipmail.domains."""
