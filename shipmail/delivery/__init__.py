"""shipmail.delivery."""
