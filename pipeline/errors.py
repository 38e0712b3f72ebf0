"""Errors of the shared audio pipeline.

Exception tree::

    PipelineError
    ├── AudioDecodeError   an input file could not be read as audio (names the file and the problem)
    ├── AudioEncodeError   the output could not be written in the chosen format
    └── StageConfigError   a stage got a bad option (also a ``ValueError``)
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every pipeline error."""


class AudioDecodeError(PipelineError):
    """An input could not be decoded."""


class AudioEncodeError(PipelineError):
    """An output could not be encoded."""


class StageConfigError(PipelineError, ValueError):
    """A stage option is out of range or of the wrong type."""
