"""shipmail.settings."""
