"""The architectures the app knows: one ``spec.toml`` per folder under each envs root.

Registering an architecture is the ``adapter = "module:Class"`` line of its spec. The manifest is read
by importing the adapter module, which by contract imports only the standard library, numpy and the
worker scaffold at module level (model libraries are imported inside ``load``, in the worker).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Dict, Sequence, Type

from runtimes.adapter import Adapter
from runtimes.environments import EnvSpec, load_specs
from runtimes.manifest import Manifest


def discover(envs_roots: Sequence[Path]) -> Dict[str, EnvSpec]:
    specs: Dict[str, EnvSpec] = {}
    for root in envs_roots:
        specs.update(load_specs(root))
    return specs


def adapter_class(spec: EnvSpec) -> Type[Adapter]:
    module_name, _, class_name = spec.adapter.partition(":")
    found = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(found, type) and issubclass(found, Adapter)):
        raise TypeError("%s is not an Adapter" % spec.adapter)
    return found


def read_manifest(spec: EnvSpec) -> Manifest:
    manifest = adapter_class(spec).manifest
    if not isinstance(manifest, Manifest):
        raise TypeError("%s has no Manifest" % spec.adapter)
    return manifest
