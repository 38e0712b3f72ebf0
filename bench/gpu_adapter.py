"""A worker that really takes GPU memory with torch (for ``bench/gpu_check.py`` on a machine with a GPU).
Character ``<name>``: holds ``GPU_HOG_GIB`` GiB (default 30) on the GPU once loaded."""

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
    builtin_characters={"a": "A", "b": "B", "c": "C"},
)


class GpuHogAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.blocks: List[Any] = []

    def load(self, model: ModelRef) -> None:
        import torch

        gib = float(os.environ.get("GPU_HOG_GIB", "30"))
        device = "cuda" if model.device == "cuda" else "cpu"
        self.blocks = [torch.ones(int(gib * (1 << 30)) // 4, dtype=torch.float32, device=device)]
        torch.cuda.synchronize()

    def generate(self, request: GenerateRequest) -> GenerateResult:
        import torch

        a = torch.randn(2048, 2048, device=self.blocks[0].device)
        value = float((a @ a).mean().item())
        audio = np.full(16000, min(abs(value), 0.5), dtype=np.float32)
        return GenerateResult(audio=audio, sample_rate=16000)
