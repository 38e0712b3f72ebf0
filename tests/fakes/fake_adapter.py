"""A fault-injecting adapter for supervisor tests: converts audio (gain) or makes a sine, and can
crash, hang, load slowly, spawn a child, or hog memory on request. Runs in a real venv with numpy.

Its shared asset is a counter of how often ``load_shared`` ran (reported in every result's first
sample when ``mode`` is "report"); a character may hold memory (``FAKE_CHARACTER_MB``), which its
unload frees. ``FAKE_IMPORT_SLEEP_S`` delays the module's import (a worker slow to connect);
``FAKE_UNLOAD_S`` makes each unload take that long (a model slow to free).

Like every architecture it declares its own facts in its manifest, which the app and the model manager
read without knowing it: ``stretch`` scales the output's length, a folder with a ``*.fakevoice`` and a
``fake.json`` is imported as a fake character, and the established app's lists named ``fake_hay_say``
are its characters (tests/models/test_architecture_facts.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Dict, Optional

import numpy as np

from runtimes.adapter import Adapter, GenerateRequest, GenerateResult, ModelRef
from runtimes.errors import BadRequestError
from runtimes.manifest import Detect, DurationScale, Manifest, Option

SAMPLE_RATE = 16000
time.sleep(float(os.environ.get("FAKE_IMPORT_SLEEP_S", "0")))
if os.environ.get("FAKE_MISSING_MODULE"):  # an env that lacks a package the adapter imports, without building another env
    import importlib

    importlib.import_module(os.environ["FAKE_MISSING_MODULE"])
SHARED_LOADS = []  # one entry per load_shared call in this process

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
        Option("mode", "Fault", "choice", "ok",
               choices=("ok", "crash", "hang", "spawn_child", "hog", "bad_request", "die_mid_frame", "report")),
        Option("crash_after_jobs", "Crash after N jobs (0 = never)", "int", 0, 0, 100, 1),
        Option("sleep_s", "Sleep per job (s)", "float", 0.0, 0.0, 600.0, 0.1),
        Option("hog_mb", "Memory to hold (MB)", "int", 0, 0, 4096, 1),
        Option("stretch", "Length (x; >1 longer)", "float", 1.0, 0.1, 10.0, 0.1),
    ),
    builtin_characters={"plain": "Plain", "slow-load": "Slow to load", "broken-load": "Fails to load", "oom-once": "Out of memory once"},
    duration_scale=DurationScale("stretch"),
    detect=Detect("*.fakevoice", ("fake.json",)),
    hay_say_names=("fake_hay_say",),
)


class FakeAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.jobs = 0
        self.loaded: Dict[str, int] = {}  # key -> times loaded, over this worker's life
        self.hog: Optional[np.ndarray] = None
        self.child: Optional[subprocess.Popen] = None

    def load_shared(self, device: str) -> None:
        SHARED_LOADS.append(device)

    def unload(self, character: Dict[str, object]) -> None:
        time.sleep(float(os.environ.get("FAKE_UNLOAD_S", "0")))
        character.clear()

    def details(self, character: Dict[str, object]) -> Dict[str, object]:
        return {"sample_rate": SAMPLE_RATE}

    def load(self, model: ModelRef) -> Dict[str, object]:
        if model.path is None and model.character not in MANIFEST.builtin_characters:
            known = ", ".join(MANIFEST.builtin_characters)
            raise BadRequestError("the fake architecture has no character %r (it has %s)" % (model.character, known))
        self.loaded[model.key] = self.loaded.get(model.key, 0) + 1
        if model.character == "slow-load":
            deadline = time.monotonic() + float(os.environ.get("FAKE_LOAD_S", "2"))
            while time.monotonic() < deadline:
                self.report_progress(None, "reading weights")
                time.sleep(0.2)
        if model.character == "broken-load":
            raise RuntimeError("weights file is corrupt")
        marker = os.environ.get("FAKE_OOM_ONCE_MARKER")
        if model.character == "oom-once" and marker and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        held = np.ones(int(float(os.environ.get("FAKE_CHARACTER_MB", "0")) * (1 << 20)) // 8, dtype=np.float64)
        return {"key": model.key, "held": held}

    def generate(self, character: Dict[str, object], request: GenerateRequest) -> GenerateResult:
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
        if mode == "report":  # what this worker shares and holds, for tests that count loads
            report = [float(len(SHARED_LOADS)), float(self.loaded.get(str(character["key"]), 0)), float(len(self.loaded))]
            return GenerateResult(audio=np.asarray(report, dtype=np.float32), sample_rate=SAMPLE_RATE)
        if mode == "hang":
            while True:
                time.sleep(3600)
        deadline = time.monotonic() + float(options.get("sleep_s", 0.0))
        while time.monotonic() < deadline:
            request.check_cancelled()
            request.report_progress(0.0, "sleeping")
            time.sleep(0.05)
        request.report_progress(1.0, "converted")
        if request.audio is not None:
            audio = request.audio * float(options.get("gain", 1.0))
        else:
            t = np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
            audio = 0.5 * np.sin(2 * np.pi * 220.0 * t)
        stretch = float(options.get("stretch", 1.0))
        if stretch != 1.0:  # every sample held for ``stretch`` samples' time
            length = np.shape(audio)[-1]
            audio = np.asarray(audio)[..., np.minimum((np.arange(round(length * stretch)) / stretch).astype(np.int64), length - 1)]
        return GenerateResult(audio=np.asarray(audio, dtype=np.float32), sample_rate=SAMPLE_RATE)
