"""Errors of the job layer::

    JobError            a message a person can act on
      UnknownJobError   no such job for this caller (also what another owner's job looks like)
"""

from __future__ import annotations


class JobError(Exception):
    pass


class UnknownJobError(JobError):
    pass
