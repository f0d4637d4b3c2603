"""Wire model of ``GET /v1/account``: the calling organisation's totals and limits.

Source: Robotomail's account usage and the nearest operation of Shipmail's reference
(``getPartnerUsage``): counts, storage and limits of one organisation, and its mail of the current
UTC month (sends, as the mailboxes' send counters count them; deliveries).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shipmail.http.schemas import Wire


class MailboxTotals(Wire):
    count: int = Field(description="Mailboxes the organisation has (any status).")
    active: int = Field(description="Of them, neither suspended nor scheduled for deletion.")
    suspended: int
    deletion_scheduled: int
    limit: int | None = Field(description="Most mailboxes it may have (SHIPMAIL_MAX_MAILBOXES_PER_ORG); null: none.")


class StorageTotals(Wire):
    used_bytes: int | None = Field(description="Bytes of mail in all its mailboxes; null if the mail server is away.")
    quota_bytes: int = Field(description="Sum of the storage quotas of the mailboxes that have one.")
    mailboxes_without_quota: int = Field(description="Mailboxes with no storage quota (no limit).")


class MessageTotals(Wire):
    month: str = Field(description="The UTC calendar month counted, `YYYY-MM`.")
    sent_this_month: int = Field(
        ge=0,
        description="Messages its mailboxes sent through the API this UTC month (their `monthly_send_count` "
        "summed; a deleted mailbox's sends no longer count).",
    )
    monthly_send_limit: int = Field(
        ge=0, description="Sum of its mailboxes' `monthly_send_limit` (each one's own, else the service's default)."
    )
    received_this_month: int = Field(
        ge=0, description="Messages delivered to its mailboxes this UTC month (their `received_this_month` summed)."
    )


class Account(Wire):
    object: Literal["account"] = "account"
    organization_id: str
    mailboxes: MailboxTotals
    storage: StorageTotals
    aliases: int = Field(description="Aliases over all its mailboxes.")
    messages: MessageTotals = Field(description="Sends and deliveries of the current UTC month.")
