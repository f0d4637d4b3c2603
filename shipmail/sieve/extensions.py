"""The Sieve extensions our scripts use that sievelib 1.6 does not know, registered with it ONCE.

sievelib parses what we generate in the tests (the parse-back checks) and in :func:`shipmail.sieve.script.parses`;
this module is the one place that teaches it:

- RFC 8579 section 4: ``fileinto :specialuse <special-use-flag> <mailbox>`` (``require "special-use"``);
- RFC 9042 section 3: ``fileinto :mailboxid <mailboxid> <mailbox>`` (``require "mailboxid"``);
- RFC 5233: the address parts ``:user`` and ``:detail`` of ``address`` and ``envelope``
  (``require "subaddress"``);
- RFC 5293: the ``addheader [:last] <field-name> <value>`` action (``require "editheader"``);
- the mail server's own delivery tests (:class:`~shipmail.mailserver.base.SieveTest`, e.g. Cyrus's
  ``jmapquery``): :func:`register_test`, a test command with one string argument, valid after its
  ``require``.

:func:`register` runs at import and is idempotent; each extension is only valid after its
``require`` (sievelib checks that when parsing).
"""

from __future__ import annotations

import re
import threading

from sievelib import commands

from shipmail.mailserver.base import SieveTest

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_lock = threading.Lock()
_registered = False

_FILEINTO_TAGS: list[commands.CommandArg] = [
    {
        "name": "specialuse",
        "type": ["tag"],
        "values": [":specialuse"],
        "required": False,
        "extra_arg": {"type": "string"},
        "extension": "special-use",
    },
    {
        "name": "mailboxid",
        "type": ["tag"],
        "values": [":mailboxid"],
        "required": False,
        "extra_arg": {"type": "string"},
        "extension": "mailboxid",
    },
]
#: RFC 5233 address parts, by the extension that allows them.
_ADDRESS_PARTS = {":user": "subaddress", ":detail": "subaddress"}


class ExtensionError(Exception):
    """A server test that cannot be registered (a bad name, or a command sievelib already has)."""


def register() -> None:
    """Teach sievelib (process-wide; a second call changes nothing) ``fileinto :specialuse`` /
    ``:mailboxid`` and the address parts ``:user``/``:detail``."""
    global _registered
    with _lock:
        if _registered:
            return
        definition = commands.FileintoCommand.args_definition
        known = {arg["name"] for arg in definition}
        position = next(i for i, arg in enumerate(definition) if arg["name"] == "mailbox")
        for tag in _FILEINTO_TAGS:
            if tag["name"] not in known:
                definition.insert(position, tag)
                position += 1
        for cls in (commands.AddressCommand, commands.EnvelopeCommand):
            for arg in cls.args_definition:
                if arg["name"] == "address-part":
                    extra = arg.setdefault("extension_values", {})
                    for part, extension in _ADDRESS_PARTS.items():
                        extra.setdefault(part, extension)
        if getattr(commands, "AddheaderCommand", None) is None:
            cls = type(
                "AddheaderCommand",
                (commands.ActionCommand,),
                {
                    "args_definition": [
                        {"name": "last", "type": ["tag"], "values": [":last"], "required": False},
                        {"name": "field-name", "type": ["string"], "required": True},
                        {"name": "value", "type": ["string"], "required": True},
                    ],
                    "extension": "editheader",
                },
            )
            commands.add_commands(cls)
            commands.AddheaderCommand = cls
        _registered = True


def register_test(test: SieveTest) -> type[commands.TestCommand]:
    """Make the server test ``test.name`` known to sievelib: a test command with one string
    argument, valid after ``require "<test.extension>"``. Registering the same test again returns
    the same class; :class:`ExtensionError` for an invalid name or one sievelib already has."""
    name = test.name.lower()
    if not _IDENTIFIER.match(name):
        raise ExtensionError(f"invalid Sieve test name {test.name!r}")
    class_name = f"{name.capitalize()}Command"
    with _lock:
        existing = getattr(commands, class_name, None)
        if existing is not None:
            if getattr(existing, "_shipmail_server_test", False) and existing.extension == test.extension:
                return existing  # type: ignore[no-any-return]
            raise ExtensionError(f"Sieve test {name!r} collides with a command sievelib knows")
        cls = type(
            class_name,
            (commands.TestCommand,),
            {
                "args_definition": [{"name": "argument", "type": ["string"], "required": True}],
                "extension": test.extension,
                "_shipmail_server_test": True,
            },
        )
        commands.add_commands(cls)
        setattr(commands, class_name, cls)
    return cls


register()
