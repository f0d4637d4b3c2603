"""JMAP EmailSubmission (RFC 8621 section 7): sending a stored Email (used by
:mod:`shipmail.messages.service`).

The methods are jmapc's, re-exported as they are (capability ``urn:ietf:params:jmap:submission``):
``EmailSubmissionSet`` (section 7.5; ``create`` values are raw dicts ``{"identityId", "emailId",
"envelope"?}``, ``on_success_update_email`` patches the sent Email, e.g. ``{"#<creation id>":
{"mailboxIds/<sent>": true, "keywords/$draft": null}}``, ``on_success_destroy_email`` destroys it)
and ``EmailSubmissionGet`` (section 7.1). An ``envelope`` (section 7, ``{"mailFrom": {"email"},
"rcptTo": [{"email"}]}``) left out is derived by the server from the message's headers.

On Cyrus 3.6 a submission runs the configured ``sendmail`` program and speaks SMTP to it over a
pipe (:mod:`shipmail.mailserver.sendmail`). Measured on Cyrus 3.6.1 (2026-12-06):

* ``Email/import`` into Drafts (``$draft``) then ``EmailSubmission/set`` with an explicit
  ``envelope`` and ``onSuccessUpdateEmail``
  ``{"#s": {"mailboxIds/<drafts>": null, "mailboxIds/<sent>": true, "keywords/$draft": null}}``
  in ONE request works: the Email ends in
  Sent without ``$draft`` (an implicit ``Email/set`` response follows the submission's), in
  about 0.16 s, the ``sendmail`` run included (Cyrus waits for its final reply).
* The bytes handed to ``sendmail`` are the stored message UNCHANGED: a ``Bcc`` header is sent as
  it is. Blind recipients belong in the envelope only (the message must not carry them).
* Without ``envelope`` the server derives it from From/To/Cc/Bcc (Bcc included).
* The identity is NOT checked against the message: a ``From`` of another domain was submitted
  under the account's identity. The caller must check the sender itself.
* ``sendAt`` (delayed send, RFC 8621 section 7) answers ``invalidProperties`` although the
  account capability advertises ``maxDelayedSend`` 44236800: scheduling is the caller's.
* Submissions are ``undoStatus: final`` at once and not kept: ``EmailSubmission/get`` and
  ``/query`` list none afterwards.
* ``onSuccessDestroyEmail: ["#s"]`` destroys the Email after sending (also works).
* Local recipients are not delivered by Cyrus itself: everything goes to ``sendmail``.
* A draft stored earlier (``Email/import`` with ``$draft``) is submitted later by its id in a
  request of its own (scheduled sends). Such a request must name ``urn:ietf:params:jmap:mail`` in
  ``using`` besides the submission capability: ``onSuccessUpdateEmail`` is an implicit
  ``Email/set``, and without that capability Cyrus answers the whole call ``invalidArguments``
  (measured 2026-12-06; in the import+submit request the ``Email/import`` brings it in).
* Blobs uploaded to the account (RFC 8620 section 6.1) are kept in Cyrus's ``#jmap`` upload
  folder; nothing in our instance's ``EVENTS`` expires them (``cyr_expire -E`` only prunes the
  duplicate-delivery database), so staged attachments stay readable past their 24 hours.

Responses are read as raw dicts, as everywhere in :mod:`shipmail.jmap` (measured faster than
jmapc's models, see :mod:`shipmail.jmap.request`).
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
