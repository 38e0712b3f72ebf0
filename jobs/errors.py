"""Errors of the job layer::

    JobError            a message a person can act on
      UnknownJobError   no such job for this caller (also what another owner's job looks like)
      QuotaError        a client already holds its share of the server (jobs waiting, kept recordings)
      StoreUnavailableError  the job store (a database server) cannot be reached now
      ArtifactError     an artifact store refused a key or lacks one
        ArtifactKeyError      a key that is not a relative POSIX path inside the store ('..', absolute, backslash, NUL)
        MissingArtifactError  nothing is stored under this key
"""

from __future__ import annotations


class JobError(Exception):
    pass


class UnknownJobError(JobError):
    pass


class QuotaError(JobError):
    """A client holds as much of the server as it may: nothing is recorded."""


class StoreUnavailableError(JobError):
    """The job store's server does not answer: nothing was recorded; try again once it is back."""


class ArtifactError(JobError):
    pass


class ArtifactKeyError(ArtifactError, ValueError):
    """A key that would name something outside the store, or that no store can hold: refused before any file is touched."""


class MissingArtifactError(ArtifactError):
    pass
