"""A Sieve script (RFC 5228) assembled from named sections, and the sievelib parse check.

A script is its ``require`` line (every extension the sections need, each once, in the order they
are first needed), then one block per :class:`Section`::

    require ["imap4flags", "fileinto"];

    # Filter: <section name>
    if <test> {
        <action>;
        ...
    }

(the layout of sievelib's ``FiltersSet``, whose ``# Filter:`` comments name the sections). No
sections and no requirements give the empty script (the implicit ``keep``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sievelib.parser import Parser

from shipmail.mailserver.base import SieveTest
from shipmail.sieve import extensions
from shipmail.sieve.build import Action, Test, string_list


class SieveBuildError(Exception):
    """A script cannot be built from its input (e.g. a rule without a usable move target)."""


@dataclass(frozen=True)
class Section:
    """``if <test> { <actions> }`` under the comment ``# Filter: <name>`` (``name`` is ours, never
    user text: line breaks in it become spaces), needing the extensions ``requires``."""

    name: str
    test: Test
    actions: Sequence[Action]
    requires: Sequence[str] = ()


def assemble(sections: Iterable[Section], requires: Iterable[str] = ()) -> str:
    """The script of ``sections`` in order; ``requires``: extensions declared first, besides the
    ones the sections need."""
    needed = dict.fromkeys(requires)
    parts: list[str] = []
    for section in sections:
        needed.update(dict.fromkeys(section.requires))
        parts.append("# Filter: " + " ".join(section.name.splitlines()) + "\nif " + section.test + " {\n")
        parts.extend("    " + a + ";\n" for a in section.actions)
        parts.append("}\n")
    if needed:
        parts.insert(0, "require " + string_list(list(needed)) + ";\n\n")
    return "".join(parts)


def parses(script: str, *tests: SieveTest) -> str | None:
    """None when sievelib parses ``script`` (our extensions and the server tests ``tests``
    registered), else its error (line and cause). For tests and diagnostics: the compilers build
    text that parses by construction, so nothing parses it back at run time."""
    for test in tests:
        extensions.register_test(test)
    parser = Parser()
    if parser.parse(script):
        return None
    return str(parser.error)
