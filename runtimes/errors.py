"""Errors raised by the runtime layer (both sides of the wire).

Exception tree::

    RuntimeLayerError
    ├── ProtocolError          malformed or oversized frame, wrong message order
    ├── RemoteError            the worker reported a structured error (type, message, traceback)
    │   └── BadRequestError    the worker refused the request's content (e.g. empty text)
    ├── WorkerBootError        the worker could not start (import error, missing package, handshake);
    │                          ``cannot_boot`` when its env cannot run it (no restart helps)
    ├── WorkerCrashedError     the worker died while starting a job or running it
    ├── WorkerStoppedError     the worker was stopped on purpose (Stop, eviction, shutdown) under a job
    ├── JobTimeoutError        a job ran past its time limit or stopped reporting progress
    ├── JobCancelledError      a person cancelled the job
    ├── ArchitectureUnavailableError  in cooldown or failed; carries ``retry_after_s``
    └── EnvironmentBuildError  building an architecture's environment failed (names the package, and
                               the working environment a failed rebuild kept)

This module is imported by workers: standard library only, Python 3.9 syntax.
"""

from __future__ import annotations

from typing import Any, Dict, Optional


class RuntimeLayerError(Exception):
    """Base of every error raised by ``runtimes``."""


class ProtocolError(RuntimeLayerError):
    """A frame or message did not follow the protocol."""


class RemoteError(RuntimeLayerError):
    """An error raised inside a worker and carried across the wire."""

    def __init__(self, error_type: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.remote_traceback = remote_traceback

    def to_dict(self) -> Dict[str, Any]:
        return {"type": self.error_type, "message": self.message, "traceback": self.remote_traceback}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "RemoteError":
        error_type = str(data.get("type", "Error"))
        message = str(data.get("message", ""))
        remote_traceback = str(data.get("traceback", ""))
        if error_type == BadRequestError.__name__:
            return BadRequestError(message, remote_traceback)
        return RemoteError(error_type, message, remote_traceback)


class BadRequestError(RemoteError):
    """The request itself is wrong (raised by adapters for bad input; shown as-is to a person)."""

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(type(self).__name__, message, remote_traceback)


class WorkerBootError(RuntimeLayerError):
    """A worker process could not start or did not complete its handshake."""

    def __init__(self, message: str, cannot_boot: bool = False) -> None:
        super().__init__(message)
        self.cannot_boot = cannot_boot


class WorkerCrashedError(RuntimeLayerError):
    """A worker process died unexpectedly."""


class WorkerStoppedError(RuntimeLayerError):
    """The worker was stopped on purpose while a job waited for it or ran on it; not a crash."""


class JobTimeoutError(RuntimeLayerError):
    """A job ran too long or its worker stopped reporting progress."""


class JobCancelledError(RuntimeLayerError):
    """The job was cancelled on request."""


class ArchitectureUnavailableError(RuntimeLayerError):
    """An architecture refuses jobs for now (cooldown after crashes, or boot failure)."""

    def __init__(self, message: str, retry_after_s: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EnvironmentBuildError(RuntimeLayerError):
    """Building an architecture environment failed. ``kept_python``: the interpreter of the working
    environment that a failed rebuild left in place (None when there was none)."""

    def __init__(
        self, message: str, package: Optional[str] = None, log_path: Optional[str] = None, kept_python: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.package = package
        self.log_path = log_path
        self.kept_python = kept_python
