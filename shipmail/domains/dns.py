"""Read-only DNS lookups for the domain checks (dnspython's asyncio resolver).

The resolver is ``SHIPMAIL_DNS_RESOLVER`` (``host:port``; unset: the system's, from
``/etc/resolv.conf``); every lookup gives up after ``SHIPMAIL_DNS_TIMEOUT`` seconds in all
(dnspython's ``lifetime``: retries included). A lookup never raises: it answers the values found
(an empty list for NXDOMAIN or no record of that type: the record does not exist) or, when the
resolver could not be asked or did not answer (timeout, SERVFAIL, REFUSED, no resolver
configured), an ``error`` saying so: the caller reports the record as unknown, not missing.

TXT records split over several character-strings are joined without separator (RFC 7208 section
3.3, RFC 6376 section 3.6.2.2); each TXT record is one value. MX values are ``"<preference>
<exchange>"`` with the exchange lower-case and without the final dot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shipmail.config import resolver_address

if TYPE_CHECKING:
    import dns.asyncresolver

# dnspython is imported where it is used: it costs ~0.3 s of CPU at import, which every process
# of the service (CLI, workers) would pay at start for a check that few requests make.


@dataclass(frozen=True)
class Lookup:
    """What one lookup found: ``values`` (possibly empty), or ``error`` when DNS did not answer."""

    values: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class MxValue:
    preference: int
    exchange: str

    def __str__(self) -> str:
        return f"{self.preference} {self.exchange}"


class Resolver:
    """Lookups through one resolver (the configured one or the system's) with a bounded time."""

    def __init__(self, address: str | None, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._config_error: str | None = None
        import dns.asyncresolver
        import dns.resolver

        try:
            if address:
                host, port = resolver_address(address)
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [host]
                resolver.port = port
            else:
                resolver = dns.asyncresolver.Resolver()
            resolver.lifetime = timeout
            resolver.timeout = timeout
            resolver.cache = None
            self._resolver = resolver
        except (dns.resolver.NoResolverConfiguration, ValueError, OSError) as exc:
            self._config_error = f"no DNS resolver is configured ({exc})"

    def describe(self) -> str:
        return f"the DNS resolver {self.address}" if self.address else "the system's DNS resolver"

    async def _query(self, name: str, rdtype: str) -> tuple[list[object], str | None]:
        import dns.exception
        import dns.name
        import dns.resolver

        if self._resolver is None:
            return [], self._config_error
        try:
            answer = await self._resolver.resolve(
                dns.name.from_text(name), rdtype, search=False, raise_on_no_answer=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.YXDOMAIN):
            return [], None
        except dns.resolver.LifetimeTimeout:
            return [], f"{self.describe()} did not answer within {self.timeout:g} s"
        except dns.resolver.NoNameservers:
            return [], f"{self.describe()} failed to answer (SERVFAIL or REFUSED)"
        except (dns.exception.DNSException, OSError) as exc:
            return [], f"{self.describe()} could not be asked: {type(exc).__name__}"
        if answer.rrset is None:
            return [], None
        return list(answer.rrset), None

    async def txt(self, name: str) -> Lookup:
        """The TXT records of ``name``, each one string (its character-strings joined)."""
        from dns.rdtypes.ANY.TXT import TXT

        records, error = await self._query(name, "TXT")
        values = [b"".join(r.strings).decode("utf-8", errors="replace") for r in records if isinstance(r, TXT)]
        return Lookup(values, error)

    async def mx(self, name: str) -> tuple[list[MxValue], str | None]:
        """The MX records of ``name``, lowest preference first."""
        from dns.rdtypes.ANY.MX import MX

        records, error = await self._query(name, "MX")
        values = [
            MxValue(int(r.preference), r.exchange.to_text(omit_final_dot=True).lower())
            for r in records
            if isinstance(r, MX)
        ]
        return sorted(values, key=lambda v: (v.preference, v.exchange)), error
