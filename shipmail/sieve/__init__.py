"""Sieve (RFC 5228) building blocks, feature-free: :mod:`~shipmail.sieve.build` (quoted strings,
tests, test lists, actions), :mod:`~shipmail.sieve.script` (a script from sections; the sievelib
parse check) and :mod:`~shipmail.sieve.extensions` (our extensions, registered with sievelib once).
The compilers live with their features: :mod:`shipmail.rules.sieve`, :mod:`shipmail.settings.sieve`,
and :mod:`shipmail.delivery.script` assembles a mailbox's script."""
