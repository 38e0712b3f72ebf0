"""The module boundaries of the house: what each layer may import (see shared house style)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Iterator, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCAFFOLD = {"runtimes.protocol", "runtimes.errors", "runtimes.worker", "runtimes.adapter", "runtimes.manifest", "runtimes.states",
            "runtimes.voice_folder", "runtimes.conditioning"}


def imports(path: Path, top_level_only: bool = False) -> Iterator[Tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


def is_stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names or module == "__future__"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def violations(paths: Set[Path], allowed: object, top_level_only: bool = False) -> list[str]:
    found = []
    for path in sorted(paths):
        for module, line in imports(path, top_level_only):
            if not allowed(module):  # type: ignore[operator]
                found.append("%s:%d imports %s" % (path.relative_to(ROOT), line, module))
    return found


def files(pattern: str) -> Set[Path]:
    return set(ROOT.glob(pattern))


def test_worker_scaffold_imports_only_stdlib_numpy_and_itself() -> None:
    paths = {ROOT / (name.replace(".", "/") + ".py") for name in SCAFFOLD}
    assert violations(paths, lambda m: is_stdlib(m) or m == "numpy" or m in SCAFFOLD) == []


def test_adapters_import_model_libraries_only_inside_functions() -> None:
    # an adapter that is a package (its model code beside it) is held to the rule in its adapter module
    paths = files("runtimes/adapters/*.py") | files("runtimes/adapters/*/adapter.py") | files("tests/fakes/*.py")
    # the shared helpers are held to the same rule: they are among these paths
    shared = SCAFFOLD | {"runtimes.adapters.common", "runtimes.adapters.checkpoint_meta", "runtimes.adapters.nsf_enhancer",
                         "runtimes.adapters.styletts2_styles", "runtimes.adapters.sovits3"}
    assert violations(paths, lambda m: is_stdlib(m) or m == "numpy" or m in shared, top_level_only=True) == []


@pytest.mark.parametrize(
    ("pattern", "forbidden"),
    [
        ("pipeline/*.py", ("app", "runtimes", "gradio")),
        ("runtimes/**/*.py", ("app", "pipeline", "gradio", "models")),
        ("models/*.py", ("app", "pipeline", "gradio", "jobs")),
        ("jobs/**/*.py", ("app", "models", "gradio", "runtimes", "pipeline")),
        ("app/actions.py", ("gradio",)),
        ("app/bootstrap.py", ("gradio",)),
        ("app/characters.py", ("gradio",)),
        ("app/model_actions.py", ("gradio",)),
        ("app/settings.py", ("gradio",)),
        ("app/ui*.py", ("runtimes", "pipeline")),
    ],
)
def test_layers_do_not_reach_across(pattern: str, forbidden: Tuple[str, ...]) -> None:
    assert violations(files(pattern), lambda m: m.split(".")[0] not in forbidden) == []


def test_package_init_files_stay_empty() -> None:
    for init in files("runtimes/**/__init__.py") | files("app/__init__.py") | files("pipeline/__init__.py") | files("models/__init__.py"):
        assert init.read_text().strip() == "", init


def imported(path: Path) -> Iterator[Tuple[str, Optional[str], int]]:
    """(module, name or None, line) for every import: ``from jobs import service`` is ("jobs.service", None)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if "." not in node.module and (ROOT / node.module / (alias.name + ".py")).exists():
                    yield "%s.%s" % (node.module, alias.name), None, node.lineno
                else:
                    yield node.module, alias.name, node.lineno


JOB_STATES = {"QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED", "STATES", "ACTIVE_STATES", "ENDED_STATES"}


def test_the_ui_knows_a_job_by_its_request_and_states_not_the_service_or_the_store() -> None:
    """``app/ui*`` may import ``jobs.spec`` (what a person asks for), ``jobs.errors`` and the state names of
    ``jobs.schema``; the service, the store, the table and the scheduling are the actions' business."""
    found = []
    for path in sorted(files("app/ui*.py")):
        for module, name, line in imported(path):
            if module.split(".")[0] != "jobs" or module in ("jobs.spec", "jobs.errors") or (module == "jobs.schema" and name in JOB_STATES):
                continue
            found.append("%s:%d imports %s%s" % (path.relative_to(ROOT), line, module, " " + name if name else ""))
    assert found == []


def test_models_see_runtimes_only_through_its_public_inspection_api() -> None:
    """An architecture's facts (manifests: import patterns, names in the established app's lists), a character folder's
    description and the weights-only checkpoint reader: ``runtimes.inspection``, nothing else of ``runtimes``."""
    found = []
    for path in sorted(files("models/*.py")):
        for module, _, line in imported(path):
            if module.split(".")[0] == "runtimes" and module != "runtimes.inspection":
                found.append("%s:%d imports %s" % (path.relative_to(ROOT), line, module))
    assert found == []
