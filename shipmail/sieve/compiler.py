"""The one Sieve script (RFC 5228) every mailbox runs at delivery, built with sievelib.

:func:`build_script` turns a :class:`ScriptOptions` into script text. Every command is built as a
sievelib ``Command`` and printed by sievelib (strings are quoted and escaped there): no text is
spliced by hand, so no input can break out of a string. The result is parsed back with sievelib's
parser before it is returned.

Today the script holds one rule, the delivery-time ``$HasAttachment`` keyword (RFC 8621 section
4.1.1) for servers that do not set it on delivery; the test comes from the mail server
(:meth:`~shipmail.mailserver.base.MailServer.delivery_sieve`), so this module knows no server.
Inbox rules, the auto-reply (``vacation``) and the spam threshold will be further fields of
:class:`ScriptOptions`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from sievelib import commands, tools
from sievelib.factory import FiltersSet
from sievelib.parser import Parser

from shipmail.mailserver.base import DeliverySieve, SieveTest
from shipmail.sieve.model import DeliveryPlan
from shipmail.sieve.rules import add_rules
from shipmail.sieve.spam import add_spam
from shipmail.sieve.vacation import add_vacation

#: JMAP keyword for messages with attachments (RFC 8621 section 4.1.1).
HAS_ATTACHMENT_KEYWORD = "$HasAttachment"

#: Rule names, written by sievelib as ``# Filter: <name>`` comments.
RULE_HAS_ATTACHMENT = "has-attachment"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_registry_lock = threading.Lock()


class SieveBuildError(Exception):
    """The script could not be built (a bad server test) or did not parse back (a bug)."""


@dataclass(frozen=True)
class ScriptOptions:
    """Everything a mailbox's delivery script is made of.

    ``server``: what the mail server needs in every delivery script (server-specific tests,
    extra ``require`` capabilities); ``plan``: the mailbox's spam threshold, auto-reply and inbox
    rules, compiled in that order after the server's part.
    """

    server: DeliverySieve = field(default_factory=DeliverySieve)
    plan: DeliveryPlan = field(default_factory=DeliveryPlan)


def register_test(test: SieveTest) -> type[commands.TestCommand]:
    """Make the server test ``test.name`` known to sievelib (for building and parsing): a test
    command with one string argument, valid after ``require "<test.extension>"``."""
    name = test.name.lower()
    if not _IDENTIFIER.match(name):
        raise SieveBuildError(f"invalid Sieve test name {test.name!r}")
    class_name = f"{name.capitalize()}Command"
    with _registry_lock:
        existing = getattr(commands, class_name, None)
        if existing is not None:
            if getattr(existing, "_shipmail_server_test", False) and existing.extension == test.extension:
                return existing  # type: ignore[no-any-return]
            raise SieveBuildError(f"Sieve test {name!r} collides with a command sievelib knows")
        cls = type(class_name, (commands.TestCommand,), {
            "args_definition": [{"name": "argument", "type": ["string"], "required": True}],
            "extension": test.extension,
            "_shipmail_server_test": True,
        })
        commands.add_commands(cls)
        setattr(commands, class_name, cls)
    return cls


def _server_test(test: SieveTest, parent: commands.Command) -> commands.Command:
    register_test(test)
    cmd = commands.get_command_instance(test.name.lower(), parent, False)
    cmd.check_next_arg("string", tools.quote(test.argument), check_extension=False)
    return cmd


def _action(name: str, parent: commands.Command, *strings: str) -> commands.Command:
    cmd = commands.get_command_instance(name, parent, False)
    for value in strings:
        cmd.check_next_arg("string", tools.quote(value), check_extension=False)
    return cmd


def _has_attachment_rule(fs: FiltersSet, test: SieveTest) -> None:
    """``if <test> { addflag "$HasAttachment"; }``."""
    rule = commands.get_command_instance("if", checkexists=False)
    rule.check_next_arg("test", _server_test(test, rule))
    add = _action("addflag", rule, HAS_ATTACHMENT_KEYWORD)
    rule.addchild(add)
    fs.require(test.extension)
    fs.require("imap4flags")
    fs.filters.append({"name": RULE_HAS_ATTACHMENT, "content": rule, "enabled": True})


def parses(script: str, server: DeliverySieve | None = None) -> str | None:
    """None when sievelib parses ``script`` (with ``server``'s tests known), else the error."""
    if server is not None and server.has_attachment is not None:
        register_test(server.has_attachment)
    parser = Parser()
    if parser.parse(script):
        return None
    return str(parser.error)


def build_script(options: ScriptOptions) -> str:
    """The delivery script for ``options`` (UTF-8 text; empty rules give a script that only
    declares its requirements, i.e. the implicit ``keep``)."""
    fs = FiltersSet("shipmail")
    for capability in options.server.requires:
        fs.require(capability)
    if options.server.has_attachment is not None:
        _has_attachment_rule(fs, options.server.has_attachment)
    add_spam(fs, options.plan.spam)
    add_vacation(fs, options.plan.auto_reply)
    add_rules(fs, options.plan.rules)
    script = str(fs)
    error = parses(script, options.server)
    if error is not None:
        raise SieveBuildError(f"generated Sieve script does not parse: {error}")
    return script
