"""Who asks: one derivation for every entry point (Gradio, HTTP).

* owner: whose history a job joins: the user (with logins), else the browser (a random id it keeps), else the
  caller's session (one gradio_client ``Client``; one HTTP request).
* client: the stable identity quotas and the fair pick count: the user, else the address. Not the browser's id: a
  browser (or a script speaking for one) makes up its own, so a new one per job would earn new turns and new room."""

from __future__ import annotations

import re
import uuid
from typing import Optional

_BROWSER_ID = re.compile(r"[0-9a-f]{32}")


def owner_of(username: Optional[str], session: str, browser: Optional[str] = None) -> str:
    if username:
        return "user:%s" % username
    if browser and _BROWSER_ID.fullmatch(browser):
        return "browser:%s" % browser
    # no session at all: a history of its own that nobody else shares (never one owner for every such call)
    return "session:%s" % (session or "none-%s" % uuid.uuid4().hex)


def client_identity(username: Optional[str], address: str) -> str:
    if username:
        return "user:%s" % username
    return "addr:%s" % (address or "unknown")
