"""API keys, scopes and Bearer authentication (RFC 6750, through authlib)."""
