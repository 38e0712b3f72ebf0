"""Each architecture's own environment: the public names.

What an environment is made from (``EnvSpec``, read from ``envs/<arch>/spec.toml``) lives in
``runtimes.envspec``; how it is built and how a worker runs in it is the environment kind's
(``runtimes.envkinds``: the ``EnvironmentKind`` seam in ``base.py``, one module per kind, the registry
in ``registry.py``). ``EnvironmentBuilder`` is the venv kind's builder, the name the launcher and the
tests build venvs with: versions side by side, swapped in once complete, a failed update keeping the
working one (``runtimes.envkinds.venv``).
"""

from __future__ import annotations

from runtimes.envkinds.base import BuiltEnv, EnvironmentKind, KindSettings, WorkerHandle
from runtimes.envkinds.registry import KINDS, EnvironmentKinds, kind_class
from runtimes.envkinds.venv import (
    BUILDER_VERSION,
    MARKER_NAME,
    POINTER_FILE_SUFFIX,
    VERSION_HASH_CHARS,
    built_from,
    env_python,
    folders_in_use,
)
from runtimes.envkinds.venv import VenvBuilder as EnvironmentBuilder
from runtimes.envspec import (
    DEVICE_POLICIES,
    EnvSpec,
    Progress,
    failing_package,
    find_interpreter,
    find_uv,
    load_spec,
    load_specs,
    pip_find_links,
    update_failed_note,
)

__all__ = [
    "BUILDER_VERSION",
    "DEVICE_POLICIES",
    "KINDS",
    "MARKER_NAME",
    "POINTER_FILE_SUFFIX",
    "VERSION_HASH_CHARS",
    "BuiltEnv",
    "EnvSpec",
    "EnvironmentBuilder",
    "EnvironmentKind",
    "EnvironmentKinds",
    "KindSettings",
    "Progress",
    "WorkerHandle",
    "built_from",
    "env_python",
    "failing_package",
    "find_interpreter",
    "find_uv",
    "folders_in_use",
    "kind_class",
    "load_spec",
    "load_specs",
    "pip_find_links",
    "update_failed_note",
]
