"""The environment kinds by the name a spec gives (``kind = "venv"``), and one object per kind for the app.

A new kind is one module beside ``base.py`` and one line in ``KINDS``; nothing else names a kind.
"""

from __future__ import annotations

import threading
from typing import Dict, List, Mapping, Optional, Type

from runtimes.envkinds.base import BuiltEnv, EnvironmentKind, KindSettings, no_progress
from runtimes.envkinds.conda import CondaKind
from runtimes.envkinds.container import ContainerKind
from runtimes.envkinds.venv import VenvKind
from runtimes.envspec import EnvSpec, Progress
from runtimes.errors import EnvironmentBuildError

KINDS: Dict[str, Type[EnvironmentKind]] = {"venv": VenvKind, "conda": CondaKind, "container": ContainerKind}


def kind_class(name: str, registry: Mapping[str, Type[EnvironmentKind]] = KINDS) -> Type[EnvironmentKind]:
    """The kind a spec names; an unknown name is refused, naming the kinds known."""
    found = registry.get(name)
    if found is None:
        raise EnvironmentBuildError("unknown environment kind %r (known kinds: %s)" % (name, ", ".join(sorted(registry))))
    return found


class EnvironmentKinds:
    """One object per kind, made on first use with the same settings (None: launch, map and reap only)."""

    def __init__(self, settings: Optional[KindSettings] = None, registry: Mapping[str, Type[EnvironmentKind]] = KINDS) -> None:
        self.settings = settings
        self.registry = dict(registry)
        self._made: Dict[str, EnvironmentKind] = {}
        self._lock = threading.Lock()

    def named(self, name: str) -> EnvironmentKind:
        with self._lock:
            kind = self._made.get(name)
            if kind is None:
                kind = self._made[name] = kind_class(name, self.registry)(self.settings)
            return kind

    def of(self, spec: EnvSpec) -> EnvironmentKind:
        """The kind that builds and launches ``spec``'s environment."""
        return self.named(spec.kind)

    def names(self) -> List[str]:
        return sorted(self.registry)

    def build(self, spec: EnvSpec, progress: Progress = no_progress) -> BuiltEnv:
        return self.of(spec).build(spec, progress)
