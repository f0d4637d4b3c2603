"""The JMAP gateway (RFC 8620, RFC 8621): sessions, method calls, blobs, error mapping.

It speaks standard JMAP only. How to reach an account (URL, credential) comes from the mail
server interface (:meth:`shipmail.mailserver.base.MailServer.jmap_access`); method calls are built
and decoded with jmapc's classes and carried by one pooled async httpx client.
"""
