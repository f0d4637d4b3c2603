"""The organisation's account: its totals and limits (``GET /v1/account``)."""
