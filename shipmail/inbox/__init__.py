"""shipmail.inbox."""
