"""What a remote person may read in an error: the problem and what to do, never the server's paths,
library class names or tracebacks. The details go to the log under a short id the message shows.

``for_person`` is the one mapping from a failure to what a person reads (and the HTTP status that fits), used
by Gradio (``app.ui_errors``) and the HTTP routes (``app.http_api``)."""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from typing import Iterable, List, NamedTuple, Optional

from app.errors import UserFacingError
from jobs.errors import JobError, UnknownJobError

logger = logging.getLogger(__name__)

_CLASS_PREFIX = re.compile(r"\b(?:[a-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Warning)\s*:\s*")
_ABSOLUTE_PATH = re.compile(r"(?<![\w/])/(?:[^\s'\"(),;:]+/)+([^\s'\"(),;:/]*)")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\):.*", re.DOTALL)


_private_roots: List[Path] = []


def set_private_roots(roots: Iterable[Path]) -> None:
    """The server's folders (data, checkout, temp, home): named in no message a person gets. Set once at start."""
    _private_roots[:] = [Path(r) for r in roots]


def redact(message: str, roots: Optional[Iterable[Path]] = None) -> str:
    """``message`` with server paths cut to the file's name and exception class names removed."""
    text = _TRACEBACK.sub("", str(message))
    chosen = _private_roots if roots is None else roots
    for root in sorted({str(r) for r in chosen if str(r) not in ("", "/")}, key=len, reverse=True):
        text = re.sub(re.escape(root) + r"(/[^\s'\"(),;:]*)?",
                      lambda match: Path(match.group(1)).name if match.group(1) else "the data folder", text)
    text = _ABSOLUTE_PATH.sub(lambda match: match.group(1) or "a server folder", text)
    text = _CLASS_PREFIX.sub("", text)
    return text.strip() or "the request failed"


def new_error_id() -> str:
    return secrets.token_hex(4)


def unexpected(exc: BaseException, where: str, log: Optional[logging.Logger] = None) -> str:
    """Log an unexpected failure with its traceback; the message a person gets names only its id."""
    error_id = new_error_id()
    (log or logger).error("error %s in %s: %s", error_id, where, exc, exc_info=exc)
    return "something went wrong on the server (error id %s); the operator finds the details in its log" % error_id


class PublicError(NamedTuple):
    status: int
    """The HTTP status that fits: 400 a problem the person can act on, 404 no such job for them, 500 the server's."""
    message: str


def for_person(exc: BaseException, where: str, log: Optional[logging.Logger] = None) -> PublicError:
    """What a person reads of a failure in ``where``: a problem they can act on (``UserFacingError``, the job
    layer's ``JobError``) as its message, redacted; anything else logged whole, the message naming its id."""
    if isinstance(exc, (UserFacingError, JobError)):
        return PublicError(404 if isinstance(exc, UnknownJobError) else 400, redact(str(exc)))
    return PublicError(500, unexpected(exc, where, log))
