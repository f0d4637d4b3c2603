"""shipmail: Shipmail's REST API served over a real JMAP mail server (RFC 8620, RFC 8621)."""

__version__ = "0.1.0"
