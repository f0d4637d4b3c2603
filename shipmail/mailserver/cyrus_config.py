"""The private Cyrus instance's directory layout and its two configuration files.

Pure functions, no I/O: :class:`CyrusLayout` names every path inside the instance directory, and
:func:`render_imapd_conf` / :func:`render_cyrus_conf` give the text of ``imapd.conf`` and
``cyrus.conf``. :mod:`shipmail.mailserver.cyrus` writes them and runs Cyrus.

Layout of an instance directory ``D``::

    D/etc/imapd.conf  D/etc/cyrus.conf       the configuration
    D/etc/sasldb2                            SASL store holding ONLY the admin (plain text by design)
    D/etc/admin.password                     the admin's password (mode 0600)
    D/etc/jwt/hs256.key                      HS256 key for Bearer JWTs (base64 in a PEM-like frame)
    D/lib/{db,socket,lock,proc,log,msg,user,quota,ptclient}   Cyrus configdirectory
    D/spool/  D/sieve/  D/search/            mail partition, sieve scripts, Xapian index (tier t1)
    D/bin/sendmail  D/bin/sendmail.py        the program Cyrus runs to send mail (see sendmail.py)
    D/run/master.pid  D/run/authd.sock       master's pid file; default saslauthd-protocol socket
    D/log/master.log                         master's stdout/stderr (Cyrus itself logs to syslog)

Sources: /work/shared/notes/cyrus-jmap.md (measured on Cyrus 3.6.1), imapd.conf(5), cyrus.conf(5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Where Debian's cyrus-imapd / cyrus-caldav packages put the daemons.
CYRUS_BIN = Path("/usr/lib/cyrus/bin")
#: The Cyrus ``servername``: logins without ``@domain`` use this SASL realm (the admin's).
SERVERNAME = "localhost"
#: The configdirectory sub-folders Cyrus needs (otherwise DBERROR / "locking disabled").
CONFIG_SUBDIRS = ("db", "socket", "lock", "proc", "log", "msg", "user", "quota", "ptclient")
#: Lifetime of a Bearer JWT after its ``iat``, in seconds (``http_jwt_max_age``).
JWT_MAX_AGE_SECONDS = 3600
#: Shortest interval between two vacation replies to one sender, in seconds
#: (``sieve_vacation_min_response``; Cyrus's default is 3 days and it silently raises a smaller
#: ``:days``/``:seconds`` to it WHEN IT COMPILES THE SCRIPT, i.e. at install: a changed value
#: applies to scripts installed afterwards; measured on 3.6.1). The auto-reply uses ``:days 1``
#: (:data:`shipmail.settings.sieve.AUTO_REPLY_DAYS`), so the bound is one day.
VACATION_MIN_RESPONSE_SECONDS = 86400
#: Largest Sieve script accepted, in KiB (``sieve_maxscriptsize``; Cyrus's default 32 KiB is too
#: small for 50 rules x 10 conditions x 256-character values: the worst case the API allows is
#: about 1066 KiB of rules plus the auto-reply). Cyrus enforces it at the JMAP upload
#: (``tooLarge``). 3.6.1 advertises it (in bytes) as ``maxSizeScript`` only in the account's
#: ``https://cyrusimap.org/ns/jmap/sieve`` capability (32768 by default, 1048576 with 1024 KiB,
#: measured); the session-level capability object is empty.
SIEVE_MAX_SCRIPT_KB = 2048


@dataclass(frozen=True)
class CyrusLayout:
    """Every path of one instance, derived from its (absolute) directory."""

    directory: Path

    @property
    def etc(self) -> Path:
        return self.directory / "etc"

    @property
    def imapd_conf(self) -> Path:
        return self.etc / "imapd.conf"

    @property
    def cyrus_conf(self) -> Path:
        return self.etc / "cyrus.conf"

    @property
    def sasldb(self) -> Path:
        return self.etc / "sasldb2"

    @property
    def admin_password_file(self) -> Path:
        return self.etc / "admin.password"

    @property
    def jwt_dir(self) -> Path:
        return self.etc / "jwt"

    @property
    def jwt_key_file(self) -> Path:
        return self.jwt_dir / "hs256.key"

    @property
    def configdirectory(self) -> Path:
        return self.directory / "lib"

    @property
    def spool(self) -> Path:
        return self.directory / "spool"

    @property
    def sievedir(self) -> Path:
        return self.directory / "sieve"

    @property
    def search(self) -> Path:
        return self.directory / "search"

    @property
    def bin(self) -> Path:
        return self.directory / "bin"

    @property
    def sendmail_wrapper(self) -> Path:
        return self.bin / "sendmail"

    @property
    def sendmail_program(self) -> Path:
        return self.bin / "sendmail.py"

    @property
    def run(self) -> Path:
        return self.directory / "run"

    @property
    def pid_file(self) -> Path:
        return self.run / "master.pid"

    @property
    def jmap_socket(self) -> Path:
        """A Unix socket where httpd serves JMAP too (for the service itself: no TCP, no Nagle)."""
        return self.configdirectory / "socket" / "http"

    @property
    def lmtp_socket(self) -> Path:
        """The Unix socket where lmtpd serves (Cyrus's ``lmtpsocket``): the inbound gateway of
        ``shipmail serve`` hands every message to Cyrus here."""
        return self.configdirectory / "socket" / "lmtp"

    @property
    def default_authd_socket(self) -> Path:
        return self.run / "authd.sock"

    @property
    def log(self) -> Path:
        return self.directory / "log"

    @property
    def log_file(self) -> Path:
        return self.log / "master.log"

    def directories(self) -> list[Path]:
        """Every directory :meth:`CyrusInstance.prepare` creates, parents first."""
        return [
            self.directory,
            self.etc,
            self.jwt_dir,
            self.configdirectory,
            *(self.configdirectory / name for name in CONFIG_SUBDIRS),
            self.spool,
            self.sievedir,
            self.search,
            self.bin,
            self.run,
            self.log,
        ]


def listen_address(host: str, port: int) -> str:
    """``host:port`` as cyrus.conf's ``listen=`` wants it (IPv6 literals in brackets)."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def render_imapd_conf(
    layout: CyrusLayout,
    *,
    admin_user: str,
    authd_socket: Path,
    failed_login_pause: int = 3,
    jwt_max_age: int = JWT_MAX_AGE_SECONDS,
) -> str:
    """The text of ``imapd.conf``.

    ``failed_login_pause`` is in seconds (Cyrus's default 3 slows password guessing over IMAP;
    0 keeps tests fast; Cyrus 3.6 accepts 0). ``sasl_auto_transition`` is never
    written: with ``yes`` libsasl copies a plain-text password into sasldb after a login.
    """
    c = layout
    lines = [
        "# Generated by shipmail (shipmail.mailserver.cyrus_config); rewritten by prepare().",
        f"configdirectory: {c.configdirectory}",
        "defaultpartition: default",
        f"partition-default: {c.spool}",
        f"sievedir: {c.sievedir}",
        f"lmtpsocket: {c.lmtp_socket}",
        f"idlesocket: {c.configdirectory / 'socket' / 'idle'}",
        f"notifysocket: {c.configdirectory / 'socket' / 'notify'}",
        f"servername: {SERVERNAME}",
        "serverinfo: off",
        "syslog_prefix: shipmail",
        f"admins: {admin_user}",
        # Users are local@domain; '/' separator so dots work in local parts; no INBOX/ prefix.
        "virtdomains: userid",
        "unixhierarchysep: yes",
        "altnamespace: yes",
        "lmtp_downcase_rcpt: yes",
        # With autocreate_post: yes LMTP mail to ANY address creates an account.
        "autocreate_post: no",
        "delete_mode: immediate",
        # Suspension is a STORAGE 0 quota (cyrus_admin.set_delivery_blocked): with strict quota
        # LMTP counts the message's size, so an EMPTY account refuses too (452 4.2.2 at DATA).
        "lmtp_strict_quota: yes",
        # Keep raw UTF-8 header bytes (RFC 6532) instead of rewriting each 8-bit byte to 'X'.
        "munge8bit: no",
        # JMAP over httpd.
        "httpmodules: jmap",
        "httpallowcompress: no",
        "conversations: yes",
        "conversations_db: twoskip",
        "jmap_nonstandard_extensions: yes",
        f"http_jwt_key_dir: {c.jwt_dir}",
        f"http_jwt_max_age: {jwt_max_age}s",
        # Text search needs Xapian; squatter -R indexes from the sync log.
        "search_engine: xapian",
        "defaultsearchtier: t1",
        f"t1searchpartition-default: {c.search}",
        "sync_log: yes",
        "sync_log_channels: squatter",
        # Outgoing mail (vacation, EmailSubmission, even GET of the JMAP session) runs this.
        "smtp_backend: sendmail",
        f"sendmail: {c.sendmail_wrapper}",
        # Delivery Sieve (one generated script per mailbox, see shipmail.delivery.script).
        f"sieve_maxscriptsize: {SIEVE_MAX_SCRIPT_KB}",
        f"sieve_vacation_min_response: {VACATION_MIN_RESPONSE_SECONDS}s",
        # fileinto takes UTF-8 folder names (RFC 5228 section 2.7.2; default 0: modified UTF-7).
        "sieve_utf8fileinto: yes",
        # Logins: the admin in sasldb, everyone else through our saslauthd-protocol socket.
        "sasl_pwcheck_method: auxprop saslauthd",
        "sasl_auxprop_plugin: sasldb",
        f"sasl_sasldb_path: {c.sasldb}",
        f"sasl_saslauthd_path: {authd_socket}",
        "sasl_mech_list: PLAIN LOGIN",
        "allowplaintext: yes",
        f"failedloginpause: {failed_login_pause}",
    ]
    return "\n".join(lines) + "\n"


def render_cyrus_conf(
    layout: CyrusLayout,
    *,
    host: str,
    imap_port: int,
    jmap_port: int,
    lmtp_port: int | None = None,
    jmap_socket: Path | None = None,
) -> str:
    """The text of ``cyrus.conf``: imap and http on ``host``, LMTP (``-a``) on the Unix socket
    :attr:`CyrusLayout.lmtp_socket` (where the inbound gateway hands mail over) and, when
    ``lmtp_port`` is given, on that TCP port of 127.0.0.1 too (tests and benchmarks that talk to
    Cyrus without the gateway), and http on the Unix socket ``jmap_socket`` too when given.

    Every ``cmd=`` carries ``-C <imapd.conf>``: children do not inherit master's.
    """
    conf = layout.imapd_conf

    def cmd(program: str, *args: str) -> str:
        return " ".join([str(CYRUS_BIN / program), "-C", str(conf), *args])

    unix_http = (
        f'  httpunix    cmd="{cmd("httpd")}" listen="{jmap_socket}" prefork=1 maxchild=100\n' if jmap_socket else ""
    )
    lmtp_tcp = ""
    if lmtp_port is not None:  # LMTP on loopback only
        tcp_listen = listen_address("127.0.0.1", lmtp_port)
        lmtp_tcp = f'  lmtptcp     cmd="{cmd("lmtpd", "-a")}" listen="{tcp_listen}" prefork=0 maxchild=20\n'
    return f"""# Generated by shipmail (shipmail.mailserver.cyrus_config); rewritten by prepare().
START {{
  recover     cmd="{cmd("ctl_cyrusdb", "-r")}"
}}
SERVICES {{
  imap        cmd="{cmd("imapd")}" listen="{listen_address(host, imap_port)}" prefork=0 maxchild=100
  http        cmd="{cmd("httpd")}" listen="{listen_address(host, jmap_port)}" prefork=1 maxchild=100
{unix_http}  lmtp        cmd="{cmd("lmtpd", "-a")}" listen="{layout.lmtp_socket}" prefork=0 maxchild=20
{lmtp_tcp}}}
EVENTS {{
  checkpoint  cmd="{cmd("ctl_cyrusdb", "-c")}" period=30
  delprune    cmd="{cmd("cyr_expire", "-E", "3")}" at=0400
}}
DAEMON {{
  squatter    cmd="{cmd("squatter", "-R", "-d")}"
}}
"""
