"""The Piper worker's onnxruntime session, as loaded by the adapter in the real Piper environment."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import PROJECT_ROOT

SCRIPT = """
import json
from runtimes.adapter import ModelRef
from runtimes.adapters.piper import PiperAdapter
voice = PiperAdapter().load(ModelRef(character="joe", path=None, device="cpu"))
options = voice.session.get_session_options()
def entry(key):
    try:
        return options.get_session_config_entry(key)
    except Exception:  # not set: onnxruntime's default (spinning)
        return None
print(json.dumps({key: entry(key) for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")}))
"""


def test_the_piper_session_does_not_spin_between_operators(piper_python: Path) -> None:
    """onnxruntime's intra-op threads spin by default between operators; on a busy 2-core machine that took the CPU the
    other intra-op thread and the app needed (issue 17 defect 16: the HTTP route +66 ms over direct synthesis, a line
    1.2 s instead of 0.8 s measured interleaved). The worker's session turns spinning off; its thread count is left."""
    out = subprocess.run([str(piper_python), "-c", SCRIPT], cwd=str(PROJECT_ROOT), capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"session.intra_op.allow_spinning": "0",
                                                               "session.inter_op.allow_spinning": "0"}
