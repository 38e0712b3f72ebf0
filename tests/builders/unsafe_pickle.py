"""A value whose unpickling runs a command: what a malicious checkpoint carries. Saved inside an
otherwise plausible checkpoint, it must be refused by weights-only loading and never run."""

from __future__ import annotations

import os
from typing import Any, Tuple


class RunsOnLoad:
    def __init__(self, creates: str) -> None:
        self.creates = creates

    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        return (os.system, ("touch %s" % self.creates,))
