"""The mail server behind the API: account provisioning and the private Cyrus instance.

Everything that is specific to one mail server lives in this package, behind the
:class:`~shipmail.mailserver.base.MailServer` interface. The JMAP gateway
(:mod:`shipmail.jmap`) stays standard (RFC 8620/8621) and only asks this package how to reach an
account (:meth:`MailServer.jmap_access`).

Modules:

| module | what |
|---|---|
| :mod:`.base` | the ``MailServer`` protocol, ``JmapAccess``, the exception tree |
| :mod:`.cyrus_server` | ``CyrusMailServer``: the protocol on Cyrus (IMAP admin + Bearer JWT) |
| :mod:`.cyrus_admin` | blocking IMAP admin commands and Cyrus account names |
| :mod:`.cyrus` | ``CyrusInstance``: prepare / start / stop the private Cyrus instance |
| :mod:`.cyrus_config` | the instance's directory layout, imapd.conf and cyrus.conf text |
| :mod:`.authd` | ``AuthDaemon``: saslauthd-protocol server checking argon2id hashes |
| :mod:`.sendmail` | the stdlib-only ``sendmail -bs`` program Cyrus runs (outbox or relay) |
| :mod:`.syslog_capture` | catches Cyrus's syslog lines during start-up when nothing else does |
| :mod:`.procs` | finding and ending processes through /proc |

Wiring it up (root; the Debian packages from ``scripts/install-cyrus``)::

    instance = CyrusInstance.from_settings(settings)
    instance.prepare()
    authd = AuthDaemon(instance.authd_socket, lookup=<address -> argon2id hash or None>)
    authd.start()
    instance.start()
    server = CyrusMailServer.from_instance(instance, timeout=settings.jmap_timeout)
    ...
    await server.aclose(); instance.stop(); authd.stop()
"""
