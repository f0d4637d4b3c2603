"""Sending: ``/v1/messages`` (send, list, get), replies, and the one outgoing path
(:mod:`shipmail.messages.outbound`)."""
