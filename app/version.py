"""The app's version for provenance: the project's version and, in a git checkout, the commit it runs."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Optional

from app.settings import PROJECT_ROOT


def _commit(root: Path) -> Optional[str]:
    """HEAD's commit read from the files (no git process): a loose ref, or one in packed-refs."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        loose = git / ref
        if loose.is_file():
            return loose.read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0][:12]
    except OSError:
        return None
    return None


@functools.lru_cache(maxsize=1)
def app_version(root: Path = PROJECT_ROOT) -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (root / "pyproject.toml").read_text(encoding="utf-8"), re.MULTILINE)
    version = match.group(1) if match else "unknown"
    commit = _commit(root)
    return "%s+g%s" % (version, commit) if commit else version
