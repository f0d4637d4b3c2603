"""shipmail.capabilities: what the calling API key may do (``GET /v1/capabilities``)."""
