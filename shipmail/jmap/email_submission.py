"""JMAP EmailSubmission (RFC 8621 section 7): sending a stored Email. Nothing calls it yet; it is
here for the sending feature.

The methods are jmapc's, re-exported as they are (capability ``urn:ietf:params:jmap:submission``):
``EmailSubmissionSet`` (section 7.5; ``create`` values are raw dicts ``{"identityId", "emailId",
"envelope"?}``, ``on_success_update_email`` patches the sent Email, e.g. ``{"#<creation id>":
{"mailboxIds/<sent>": true, "keywords/$draft": null}}``, ``on_success_destroy_email`` destroys it)
and ``EmailSubmissionGet`` (section 7.1). An ``envelope`` (section 7, ``{"mailFrom": {"email"},
"rcptTo": [{"email"}]}``) left out is derived by the server from the message's headers.

On Cyrus 3.6 a submission runs the configured ``sendmail`` program and speaks SMTP to it over a
pipe (:mod:`shipmail.mailserver.sendmail`). Responses are read as raw dicts, as everywhere in
:mod:`shipmail.jmap` (measured faster than jmapc's models, see :mod:`shipmail.jmap.request`).
"""

from __future__ import annotations

from jmapc.methods import EmailSubmissionGet, EmailSubmissionSet

__all__ = ["PROPERTIES", "EmailSubmissionGet", "EmailSubmissionSet"]

#: Properties of an EmailSubmission (RFC 8621 section 7).
PROPERTIES: list[str] = [
    "id",
    "identityId",
    "emailId",
    "threadId",
    "envelope",
    "sendAt",
    "undoStatus",
    "deliveryStatus",
    "dsnBlobIds",
    "mdnBlobIds",
]
