"""A fault-injecting adapter for supervisor tests: converts audio (gain) or makes a sine, and can
crash, hang, load slowly, spawn a child, or hog memory on request. Runs in a real venv with numpy."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Optional

import numpy as np

from runtimes.adapter import Adapter, GenerateRequest, GenerateResult, ModelRef
from runtimes.errors import BadRequestError
from runtimes.manifest import Manifest, Option

SAMPLE_RATE = 16000

MANIFEST = Manifest(
    architecture="fake",
    display_name="Fake converter (tests)",
    version="1",
    capabilities=("convert",),
    needs_text=False,
    needs_audio=True,
    input_sample_rate=SAMPLE_RATE,
    options=(
        Option("gain", "Gain", "float", 1.0, 0.0, 4.0, 0.1),
        Option("mode", "Fault", "choice", "ok", choices=("ok", "crash", "hang", "spawn_child", "hog", "bad_request", "die_mid_frame")),
        Option("crash_after_jobs", "Crash after N jobs (0 = never)", "int", 0, 0, 100, 1),
        Option("sleep_s", "Sleep per job (s)", "float", 0.0, 0.0, 600.0, 0.1),
        Option("hog_mb", "Memory to hold (MB)", "int", 0, 0, 4096, 1),
    ),
    builtin_characters={"plain": "Plain", "slow-load": "Slow to load", "broken-load": "Fails to load", "oom-once": "Out of memory once"},
)


class FakeAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.jobs = 0
        self.hog: Optional[np.ndarray] = None
        self.child: Optional[subprocess.Popen] = None

    def load(self, model: ModelRef) -> None:
        if model.character == "slow-load":
            time.sleep(float(os.environ.get("FAKE_LOAD_S", "2")))
        if model.character == "broken-load":
            raise RuntimeError("weights file is corrupt")
        marker = os.environ.get("FAKE_OOM_ONCE_MARKER")
        if model.character == "oom-once" and marker and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def generate(self, request: GenerateRequest) -> GenerateResult:
        self.jobs += 1
        options = request.options
        mode = options.get("mode", "ok")
        crash_after = int(options.get("crash_after_jobs", 0))
        if mode == "crash" or (crash_after and self.jobs > crash_after):
            os._exit(17)
        if mode == "bad_request":
            raise BadRequestError("this request is refused on purpose")
        if mode == "spawn_child":
            self.child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            request.report_progress(0.5, "child %d" % self.child.pid)
        if mode == "hog":
            self.hog = np.ones(int(options.get("hog_mb", 0)) * (1 << 20) // 8, dtype=np.float64)
        if mode == "die_mid_frame":
            # A result far larger than a socket buffer, and death while the scaffold is sending it.
            threading.Timer(0.3, lambda: os._exit(18)).start()
            return GenerateResult(audio=np.ones(100_000_000, dtype=np.float32), sample_rate=SAMPLE_RATE)
        if mode == "hang":
            while True:
                time.sleep(3600)
        deadline = time.monotonic() + float(options.get("sleep_s", 0.0))
        while time.monotonic() < deadline:
            request.check_cancelled()
            request.report_progress(0.0, "sleeping")
            time.sleep(0.05)
        if request.audio is not None:
            audio = request.audio * float(options.get("gain", 1.0))
        else:
            t = np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
            audio = 0.5 * np.sin(2 * np.pi * 220.0 * t)
        return GenerateResult(audio=np.asarray(audio, dtype=np.float32), sample_rate=SAMPLE_RATE)
