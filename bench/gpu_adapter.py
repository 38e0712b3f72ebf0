"""A worker that really takes GPU memory with torch (for ``bench/gpu_check.py`` on a machine with a GPU).
Shared assets: ``GPU_SHARED_GIB`` GiB (default 2) loaded once per worker. Character ``<name>``: holds
``GPU_HOG_GIB_<NAME>`` GiB, else ``GPU_HOG_GIB`` (default 30), on the GPU once loaded, freed again by
``unload``."""

from __future__ import annotations

import os
from typing import Any, List

import numpy as np

from runtimes.adapter import Adapter, GenerateRequest, GenerateResult, ModelRef
from runtimes.manifest import Manifest

MANIFEST = Manifest(
    architecture="gpuhog",
    display_name="GPU memory hog (GPU check)",
    version="1",
    capabilities=("tts",),
    needs_text=True,
    needs_audio=False,
    builtin_characters={"a": "A", "b": "B", "c": "C", "d": "D", "big": "Big"},
)


class GpuHogAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.shared: List[Any] = []

    def load_shared(self, device: str) -> None:
        import torch

        gib = float(os.environ.get("GPU_SHARED_GIB", "2"))
        self.shared = [torch.ones(int(gib * (1 << 30)) // 4, dtype=torch.float32, device="cuda" if device == "cuda" else "cpu")]
        torch.cuda.synchronize()

    def load(self, model: ModelRef) -> List[Any]:
        import torch

        gib = float(os.environ.get("GPU_HOG_GIB_" + model.character.upper(), os.environ.get("GPU_HOG_GIB", "30")))
        device = "cuda" if model.device == "cuda" else "cpu"
        blocks = [torch.ones(int(gib * (1 << 30)) // 4, dtype=torch.float32, device=device)]
        torch.cuda.synchronize()
        return blocks

    def unload(self, character: List[Any]) -> None:
        import torch

        character.clear()
        torch.cuda.empty_cache()  # give the memory back to the driver, where NVML sees it

    def generate(self, character: List[Any], request: GenerateRequest) -> GenerateResult:
        import torch

        a = torch.randn(2048, 2048, device=character[0].device)
        value = float((a @ a).mean().item())
        audio = np.full(16000, min(abs(value), 0.5), dtype=np.float32)
        return GenerateResult(audio=audio, sample_rate=16000)
