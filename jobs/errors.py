"""Errors of the job layer::

    JobError            a message a person can act on
      UnknownJobError   no such job for this caller (also what another owner's job looks like)
      QuotaError        a client already holds its share of the server (jobs waiting, kept recordings)
"""

from __future__ import annotations


class JobError(Exception):
    pass


class UnknownJobError(JobError):
    pass


class QuotaError(JobError):
    """A client holds as much of the server as it may: nothing is recorded."""
