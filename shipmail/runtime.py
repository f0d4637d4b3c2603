"""The services' shared handles, built once per app in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from shipmail.config import Settings
from shipmail.db.engine import Database
from shipmail.http.cursors import CursorCodec
from shipmail.jmap.client import JmapClient
from shipmail.mailserver.base import MailServer


@dataclass
class Services:
    """Database, mail server, JMAP gateway and cursor codec of one running app."""

    settings: Settings
    db: Database
    mail: MailServer
    jmap: JmapClient
    cursors: CursorCodec
