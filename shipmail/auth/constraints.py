"""What an API key limited to some mailboxes (:attr:`shipmail.auth.bearer.Principal.mailbox_ids`)
may do, checked for every operation before its handler runs (:func:`check_operation`).

Such a key (``shipmail keys create --mailbox mbx_... [--mailbox ...]``) keeps its scopes, and:

* an operation on one mailbox (path ``/mailboxes/{id}...``) on a mailbox outside its list answers
  404 ``not_found`` with the very message of an id that does not exist (``No mailbox with id
  '<id>'.``), so the key learns nothing about the organisation's other mailboxes;
* ``GET /mailboxes`` lists only its mailboxes (the handler filters; see
  :func:`shipmail.mailboxes.service.list_page`), ``GET /capabilities`` shows the constraint;
* anything else (creating mailboxes, every domain operation, and any operation not about one
  mailbox, including ones added later until they are listed here) answers 403
  ``authorization_error``: default deny.
"""

from __future__ import annotations

from collections.abc import Mapping

from shipmail.auth.bearer import Principal
from shipmail.http.errors import NotFound, PermissionDenied

#: The path prefix of the operations on one mailbox, and the name of its id parameter.
MAILBOX_PATH = "/mailboxes/{id}"
MAILBOX_PARAM = "id"
#: Operations outside :data:`MAILBOX_PATH` that a limited key may call (they honour the limit).
ALLOWED = frozenset({("GET", "/mailboxes"), ("GET", "/capabilities")})


def check_operation(principal: Principal | None, method: str, path: str, path_params: Mapping[str, str]) -> None:
    """Raise 404/403 when ``principal``'s mailbox limit forbids the operation ``method path``
    (``path`` as declared, e.g. ``/mailboxes/{id}/rules``) with ``path_params``; return otherwise."""
    if principal is None or principal.mailbox_ids is None:
        return
    if path == MAILBOX_PATH or path.startswith(MAILBOX_PATH + "/"):
        mailbox_id = str(path_params.get(MAILBOX_PARAM, ""))
        if mailbox_id not in principal.mailbox_ids:
            raise NotFound(f"No mailbox with id {mailbox_id!r}.")
        return
    if (method.upper(), path) in ALLOWED:
        return
    raise PermissionDenied("This API key is limited to some mailboxes: it cannot use this operation.")
