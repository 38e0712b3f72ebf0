"""How an action's failure reaches a person through Gradio: a ``gr.Error`` with the message
``app.public_errors.for_person`` gives (the problem, never the server's paths, class names or tracebacks)."""

from __future__ import annotations

import logging
from typing import Callable, Optional, TypeVar

import gradio as gr

from app.access import Access
from app.public_errors import for_person

logger = logging.getLogger(__name__)
T = TypeVar("T")


def shown_to_person(call: Callable[[], T]) -> T:
    """Run an action; a problem the person can act on becomes a ``gr.Error`` (a toast in the UI, an
    ``AppError`` carrying the message for gradio_client); anything unexpected is logged with an id."""
    try:
        return call()
    except gr.Error:
        raise
    except Exception as exc:  # the boundary to a remote person: ``for_person`` logs the unexpected whole
        raise gr.Error(for_person(exc, getattr(call, "__qualname__", "an action"), logger).message, print_exception=False) from None


def as_operator(access: Access, request: Optional[gr.Request], action: Callable[[], T]) -> T:
    """``shown_to_person``, for the operator only when the app is shared or has logins."""
    def run() -> T:
        access.require_admin(getattr(request, "username", None))
        return action()

    return shown_to_person(run)
