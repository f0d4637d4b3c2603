"""The mail server behind the API: account provisioning and the private Cyrus instance.

Everything that is specific to one mail server lives in this package, behind the
:class:`~shipmail.mailserver.base.MailServer` interface. The JMAP gateway
(:mod:`shipmail.jmap`) stays standard (RFC 8620/8621) and only asks this package how to reach an
account (:meth:`MailServer.jmap_access`).
"""
