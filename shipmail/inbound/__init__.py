"""The inbound gateway: our LMTP listener on ``SHIPMAIL_LMTP_PORT`` in front of the mail server's
own LMTP (see :mod:`shipmail.inbound.gateway`)."""
