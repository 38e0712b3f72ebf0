"""How an action's failure reaches a person through Gradio: a ``gr.Error`` with a message that names the
problem and never the server's paths, class names or tracebacks (``app.public_errors``)."""

from __future__ import annotations

import logging
from typing import Callable, Optional, TypeVar

import gradio as gr

from app.access import Access
from app.errors import UserFacingError
from app.public_errors import redact, unexpected

logger = logging.getLogger(__name__)
T = TypeVar("T")


def shown_to_person(call: Callable[[], T]) -> T:
    """Run an action; a problem the person can act on becomes a ``gr.Error`` (a toast in the UI, an
    ``AppError`` carrying the message for gradio_client); anything unexpected is logged with an id."""
    try:
        return call()
    except UserFacingError as exc:
        raise gr.Error(redact(str(exc)), print_exception=False) from None
    except gr.Error:
        raise
    except Exception as exc:  # the boundary to a remote person: log it whole, show its id
        raise gr.Error(unexpected(exc, getattr(call, "__qualname__", "an action"), logger), print_exception=False) from None


def as_operator(access: Access, request: Optional[gr.Request], action: Callable[[], T]) -> T:
    """``shown_to_person``, for the operator only when the app is shared or has logins."""
    def run() -> T:
        access.require_admin(getattr(request, "username", None))
        return action()

    return shown_to_person(run)
