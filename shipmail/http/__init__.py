"""shipmail.http."""
