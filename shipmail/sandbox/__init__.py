"""Sandbox: inbound test mail built from JSON and delivered like real mail (``/v1/mailboxes/{id}/sandbox/inbound``).

``routes`` (the operation), ``service`` (build, deliver, find), ``schemas`` (wire models).
"""
