"""The services' shared handles, built once per app in the lifespan."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from shipmail.config import Settings
from shipmail.db.engine import Database
from shipmail.http.cursors import CursorCodec
from shipmail.jmap.client import JmapClient
from shipmail.mailserver.base import MailServer

#: Set when the process begins to shut down (SIGTERM/SIGINT in ``serve-api``, the app's lifespan
#: end): long-lived responses (the event stream) end cleanly instead of being cut.
SHUTTING_DOWN = threading.Event()


@dataclass
class Services:
    """Database, mail server, JMAP gateway and cursor codec of one running app."""

    settings: Settings
    db: Database
    mail: MailServer
    jmap: JmapClient
    cursors: CursorCodec
