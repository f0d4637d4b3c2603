"""Recipient-safe reply drafts of inbox threads (``createMailboxInboxReplyDraft``,
``sendMailboxInboxReplyDraft``)."""
