"""Events: the durable, ordered log of what happened to a mailbox (``message.received``,
``mailbox.rule_matched``, ...), written by the features where it happens, read by the event
stream and the catch-up page of ``GET /v1/mailboxes/{id}/events``."""
