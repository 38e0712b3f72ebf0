"""A test-only text-to-speech architecture that speaks in the voice of a reference recording (``Manifest.reference``,
required, 3-10 s), as GPT-SoVITS does. Its take is the reference itself, at the reference's own rate: a test reads from
the result's length and rate that the reference arrived whole, mono, at its own rate and not pre-processed."""

from __future__ import annotations

from typing import Dict

import numpy as np

from runtimes.adapter import Adapter, GenerateRequest, GenerateResult, ModelRef
from runtimes.manifest import Manifest, Option, Reference

MANIFEST = Manifest(
    architecture="fake_reference",
    display_name="Fake reference TTS (tests)",
    version="1",
    capabilities=("tts",),
    needs_text=True,
    needs_audio=False,
    options=(Option("gain", "Gain", "float", 1.0, 0.0, 4.0, 0.1),),
    builtin_characters={"echo": "Echo"},
    reference=Reference(required=True, min_s=3, max_s=10, label="Voice to speak like"),
)


class FakeReferenceAdapter(Adapter):
    manifest = MANIFEST

    def load(self, model: ModelRef) -> Dict[str, object]:
        return {"key": model.key}

    def generate(self, character: Dict[str, object], request: GenerateRequest) -> GenerateResult:
        # the scaffold checked the text and the reference (3-10 s at its rate) against the manifest before this
        if request.audio is None or not request.audio_sample_rate or np.ndim(request.audio) != 1:
            raise ValueError("the reference did not arrive as mono audio with its rate")
        spoken = np.asarray(request.audio, dtype=np.float32) * float(request.options.get("gain", 1.0))
        return GenerateResult(audio=spoken, sample_rate=int(request.audio_sample_rate))
