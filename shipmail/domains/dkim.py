"""DKIM keys and signatures of a domain (RFC 6376; Ed25519-SHA256 of RFC 8463 as a second selector).

Each domain gets, at creation (older domains: on first use, :func:`ensure_keys`), a 2048-bit RSA
key and an Ed25519 key, made with ``cryptography``. The private keys are stored as PKCS#8 PEM
encrypted with the service secret (:mod:`shipmail.domains.crypto`); the public keys as the base64
``p=`` values of their DNS records, published at ``<selector>._domainkey.<domain>``
(``SHIPMAIL_DKIM_SELECTOR``, ``SHIPMAIL_DKIM_ED25519_SELECTOR``).

Signing is dkimpy's: relaxed/relaxed canonicalisation, the header fields RFC 6376 section 5.4.1
recommends (dkimpy's default set: From, Subject, Date, To, Cc, Reply-To, Message-ID,
In-Reply-To, References, the MIME and List-* fields, ... when present), ``From`` always.
:func:`signer_for` is what the outbound path calls: it signs with the RSA key always and adds the
Ed25519 signature once its DNS record has been seen (a receiver that cannot find a key reads the
signature as broken, while an absent one costs nothing).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.config import Settings
from shipmail.domains import crypto
from shipmail.domains.models import Domain

RSA_BITS = 2048
#: dkimpy's canonicalisation argument: relaxed header / relaxed body.
CANONICALIZE = (b"relaxed", b"relaxed")


@dataclass(frozen=True)
class KeyPair:
    """A private key (PKCS#8 PEM) and the base64 ``p=`` value of its DKIM record."""

    private_pem: bytes
    public_b64: str


def generate_rsa() -> KeyPair:
    """A fresh 2048-bit RSA key (exponent 65537); ``p=`` is the DER SubjectPublicKeyInfo."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(_pkcs8(key), base64.b64encode(der).decode("ascii"))


def generate_ed25519() -> KeyPair:
    """A fresh Ed25519 key; ``p=`` is the raw 32-byte public key (RFC 8463 section 4.2)."""
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KeyPair(_pkcs8(key), base64.b64encode(raw).decode("ascii"))


def _pkcs8(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def record_value(public_b64: str, *, algorithm: str = "rsa") -> str:
    """The TXT value publishing a key: ``v=DKIM1; k=rsa|ed25519; p=<base64>``."""
    return f"v=DKIM1; k={algorithm}; p={public_b64}"


def sign(message: bytes, *, domain: str, selector: str, private_key_pem: bytes) -> bytes:
    """``message`` (RFC 5322 bytes) with a ``DKIM-Signature`` header field prepended, made with
    ``private_key_pem`` (PEM, PKCS#8 or PKCS#1: RSA gives ``a=rsa-sha256``, Ed25519
    ``a=ed25519-sha256``) for ``d=domain``, ``s=selector``, relaxed/relaxed. Raises
    ``ValueError`` for a key of another type, ``dkim.DKIMException`` for a message without
    ``From``."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm = b"rsa-sha256"
        privkey = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = b"ed25519-sha256"
        seed = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        privkey = base64.b64encode(seed)
    else:
        raise ValueError(f"unsupported DKIM key type {type(key).__name__}")
    import dkim as dkimpy  # here: dkimpy imports dnspython (~0.3 s), only signing needs it

    header = dkimpy.sign(
        message,
        selector.encode("ascii"),
        domain.encode("ascii"),
        privkey,
        canonicalize=CANONICALIZE,
        signature_algorithm=algorithm,
    )
    return bytes(header) + message


def ensure_keys(domain: Domain, secret: bytes) -> bool:
    """Give ``domain`` both key pairs if it lacks them, or if its stored keys no longer decrypt
    (the service secret changed); True when the row changed (the caller commits)."""
    changed = False
    if domain.dkim_private_key is None or _undecryptable(domain.dkim_private_key, secret, domain.id):
        pair = generate_rsa()
        domain.dkim_private_key = crypto.encrypt(secret, pair.private_pem, bound_to=domain.id)
        domain.dkim_public_key = pair.public_b64
        domain.dkim_verified = False
        changed = True
    if domain.dkim_ed25519_private_key is None or _undecryptable(domain.dkim_ed25519_private_key, secret, domain.id):
        pair = generate_ed25519()
        domain.dkim_ed25519_private_key = crypto.encrypt(secret, pair.private_pem, bound_to=domain.id)
        domain.dkim_ed25519_public_key = pair.public_b64
        domain.dkim_ed25519_verified = False
        changed = True
    return changed


def _undecryptable(stored: str, secret: bytes, domain_id: str) -> bool:
    try:
        crypto.decrypt(secret, stored, bound_to=domain_id)
    except crypto.UndecryptableSecret:
        return True
    return False


def private_keys(domain: Domain, secret: bytes) -> tuple[bytes | None, bytes | None]:
    """The decrypted PEM of the domain's RSA and Ed25519 keys (None where missing or unreadable)."""

    def read(stored: str | None) -> bytes | None:
        if stored is None:
            return None
        try:
            return crypto.decrypt(secret, stored, bound_to=domain.id)
        except crypto.UndecryptableSecret:
            return None

    return read(domain.dkim_private_key), read(domain.dkim_ed25519_private_key)


async def signer_for(session: AsyncSession, domain_name: str, *, settings: Settings) -> Callable[[bytes], bytes] | None:
    """The signing function of the domain ``domain_name`` (any organisation's: the caller has
    already decided the sender may send from it), or None when no such domain exists or it has
    no usable DKIM key yet. The function takes an RFC 5322 message and returns it signed with the
    RSA key (selector ``settings.dkim_selector``) and, when its DNS record was seen by the last
    check, the Ed25519 key (``settings.dkim_ed25519_selector``). Reads only; the keys are
    decrypted once, here."""
    name = domain_name.strip().rstrip(".").lower()
    domain = (await session.exec(select(Domain).where(col(Domain.name) == name))).first()
    if domain is None:
        return None
    rsa_pem, ed_pem = private_keys(domain, settings.secret_key)
    if rsa_pem is None:
        return None
    ed_key = ed_pem if domain.dkim_ed25519_verified else None
    rsa_selector, ed_selector = settings.dkim_selector, settings.dkim_ed25519_selector

    def sign_message(message: bytes) -> bytes:
        signed = sign(message, domain=name, selector=rsa_selector, private_key_pem=rsa_pem)
        if ed_key is not None:
            # The Ed25519 signature goes on top; both cover the same header fields and body.
            signed = sign(signed, domain=name, selector=ed_selector, private_key_pem=ed_key)
        return signed

    return sign_message
