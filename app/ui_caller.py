"""Who a Gradio call comes from (``app.identity`` over a ``gr.Request``): its owner, session and client."""

from __future__ import annotations

from typing import Optional, Tuple

import gradio as gr

from app.identity import client_identity, owner_of


def session_of(request: Optional[gr.Request]) -> str:
    """Jobs are cancelled per session: a browser tab, or one gradio_client Client."""
    return str(getattr(request, "session_hash", "") or "")


def username_of(request: Optional[gr.Request]) -> Optional[str]:
    return getattr(request, "username", None)


def request_owner(request: Optional[gr.Request], browser: Optional[str] = None) -> Tuple[str, str, str]:
    """(owner, session, client) of a Gradio call (``app.identity``)."""
    session = session_of(request)
    username = username_of(request)
    address = str(getattr(getattr(request, "client", None), "host", "") or "")
    return owner_of(username, session, browser), session, client_identity(username, address)
