"""The ``domains`` table.

Verification state (issue 13): ``status`` is ``pending`` until a DNS check finds the ownership TXT
record and the MX record, then ``verified``; a later check that no longer finds them makes it
``degraded`` (and finding them again, ``verified``). ``verified_by`` says who verified it: ``dns``
or ``operator`` (``shipmail domains verify``; the background re-check never degrades those). The
``*_verified`` flags are the last check's findings. ``dkim_private_key`` /
``dkim_ed25519_private_key`` are encrypted with the service secret (:mod:`shipmail.domains.crypto`),
never stored in plain text; the public halves are the base64 ``p=`` values of the DKIM records.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class Domain(SQLModel, table=True):
    """A mail domain of one organisation; mailboxes need it ``verified``."""

    __tablename__ = "domains"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=64)
    name: str = Field(max_length=253, unique=True, index=True)
    status: str = Field(default="pending", max_length=16)
    verified_at: datetime | None = timestamp_field(nullable=True)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
    #: ``dns`` or ``operator`` once verified (None while never verified).
    verified_by: str | None = Field(default=None, max_length=16)
    #: The value of the ownership TXT record ``_shipmail.<name>``: ``shipmail-verification=<token>``.
    ownership_token: str = Field(default="", max_length=64)
    mx_verified: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    spf_verified: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    dkim_verified: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    dkim_ed25519_verified: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    dmarc_verified: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    dmarc_managed_externally: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    ownership_verified: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    #: When the DNS was last checked (verification or background re-check), and the resolver's
    #: failure if that check could not ask it.
    last_checked_at: datetime | None = timestamp_field(nullable=True)
    last_check_error: str | None = Field(default=None, max_length=500)
    #: Encrypted PKCS#1 PEM (RSA 2048) and its public key (base64 DER SubjectPublicKeyInfo).
    dkim_private_key: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    dkim_public_key: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    #: Encrypted base64 Ed25519 seed (RFC 8463) and the base64 raw public key.
    dkim_ed25519_private_key: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    dkim_ed25519_public_key: str | None = Field(default=None, max_length=64)
    #: Mailbox receiving mail to unknown addresses of the domain (None: unknown addresses bounce).
    catch_all_mailbox_id: str | None = Field(
        default=None,
        sa_column=sa.Column(
            "catch_all_mailbox_id",
            sa.String(64),
            sa.ForeignKey("mailboxes.id", ondelete="SET NULL", name="fk_domains_catch_all_mailbox_id"),
            nullable=True,
        ),
    )
