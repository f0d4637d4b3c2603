"""API keys, scopes and Bearer authentication (RFC 6750, through authlib).

- :mod:`shipmail.auth.keys`: key material (``sm_live_...``) and its HMAC-SHA256 digest.
- :mod:`shipmail.auth.scopes`: the scopes and Shipmail's rules (``*`` grants all, ``X:write``
  implies ``X:read``).
- :mod:`shipmail.auth.bearer`: authlib's ``ResourceProtector`` with our ``BearerTokenValidator``
  (``authenticate_token`` finds the key through an injected lookup; ``scope_insufficient`` is
  authlib's check over the expanded scopes); the key itself is authlib's token (``TokenMixin``).

Where authlib does not fit, and what is done instead:

- authlib's protector is synchronous and the key lookup blocks (one ``SELECT``): the whole
  ``validate_request`` runs in a worker thread on authlib's own ``JsonRequest`` built from the
  Starlette request's method, URL and headers (what authlib's Flask and Django integrations do).
- authlib's errors carry OAuth bodies and a ``WWW-Authenticate`` with ``error_description``; the
  API keeps its error envelope and its header (``Bearer realm="shipmail", error="..."``), so
  :meth:`~shipmail.auth.bearer.BearerAuth.authenticate` maps authlib's exceptions onto
  :mod:`shipmail.http.errors` (401 for missing, malformed, unknown, revoked or expired keys; 403
  for a missing scope).
- No lookup cache: keys are revoked by the CLI, another process, and a revoked key must answer
  401 on the next request; the lookup is one indexed ``SELECT`` (about 0.2 ms on SQLite).
"""
