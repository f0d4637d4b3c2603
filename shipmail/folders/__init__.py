"""shipmail.folders."""
