"""Praat voice changer (parselmouth): moves a recording's pitch and formants (Praat's "Change gender")
so it sounds like another character. Audio in, audio out; no model weights."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from runtimes.adapter import Adapter, GenerateRequest, GenerateResult, ModelRef
from runtimes.errors import BadRequestError
from runtimes.manifest import DurationScale, Manifest, Option

# builtin characters: starting points a person then tunes with the options
CHARACTERS: Dict[str, Dict[str, float]] = {
    "higher": {"formant_shift_ratio": 1.15, "pitch_shift_ratio": 1.6},
    "lower": {"formant_shift_ratio": 0.87, "pitch_shift_ratio": 0.65},
    "as-recorded": {"formant_shift_ratio": 1.0, "pitch_shift_ratio": 1.0},
}

MANIFEST = Manifest(
    architecture="praat",
    display_name="Praat voice changer (recordings)",
    version="1",
    capabilities=("convert",),
    needs_text=False,
    needs_audio=True,
    input_sample_rate=44100,
    options=(
        Option("formant_shift_ratio", "Formant shift (x; 0 = the character's)", "float", 0.0, 0.0, 2.0, 0.01,
               help="above 1 sounds smaller/brighter, below 1 bigger/darker"),
        Option("pitch_shift_ratio", "Pitch (x; 0 = the character's)", "float", 0.0, 0.0, 4.0, 0.01),
        Option("pitch_range_factor", "Pitch range (x; 1 = as recorded, 0 = monotone)", "float", 1.0, 0.0, 4.0, 0.05),
        Option("duration_factor", "Duration (x; >1 slower)", "float", 1.0, 0.25, 4.0, 0.05),
        Option("pitch_floor_hz", "Lowest pitch in the recording (Hz)", "float", 75.0, 30.0, 300.0, 5.0),
        Option("pitch_ceiling_hz", "Highest pitch in the recording (Hz)", "float", 600.0, 200.0, 1200.0, 10.0),
    ),
    builtin_characters={"higher": "Higher, brighter voice", "lower": "Lower, darker voice", "as-recorded": "As recorded"},
    duration_scale=DurationScale("duration_factor"),
)


class PraatAdapter(Adapter):
    """Praat itself is the shared part (loaded once); a character is only its starting settings."""

    manifest = MANIFEST

    def __init__(self) -> None:
        self.call: Any = None
        self.sound_class: Any = None

    def load_shared(self, device: str) -> None:
        import parselmouth
        from parselmouth.praat import call

        self.call = call
        self.sound_class = parselmouth.Sound

    def load(self, model: ModelRef) -> Dict[str, float]:
        if model.path is not None or model.character not in CHARACTERS:
            raise BadRequestError("the Praat voice changer has no character %r: it has the characters %s"
                                  % (model.path or model.character, ", ".join(CHARACTERS)))
        return CHARACTERS[model.character]

    def details(self, character: Dict[str, float]) -> Dict[str, Any]:
        return {"sample_rate": MANIFEST.input_sample_rate}  # Praat keeps the recording's rate: the manifest's

    def generate(self, character: Dict[str, float], request: GenerateRequest) -> GenerateResult:
        if request.audio is None or request.audio_sample_rate is None or request.audio.size == 0:
            raise BadRequestError("the Praat voice changer needs a recording")
        options = request.options
        formant = float(options["formant_shift_ratio"]) or character["formant_shift_ratio"]
        pitch_ratio = float(options["pitch_shift_ratio"]) or character["pitch_shift_ratio"]
        floor_hz, ceiling_hz = float(options["pitch_floor_hz"]), float(options["pitch_ceiling_hz"])
        sound = self.sound_class(np.asarray(request.audio, dtype=np.float64), sampling_frequency=request.audio_sample_rate)
        request.report_progress(0.2, "analysing pitch")
        pitch = self.call(sound, "To Pitch", 0.0, floor_hz, ceiling_hz)
        median_hz = self.call(pitch, "Get quantile", 0, 0, 0.5, "Hertz")
        if not np.isfinite(median_hz) or median_hz <= 0:
            raise BadRequestError("no voiced speech found in the recording (pitch between %g and %g Hz)" % (floor_hz, ceiling_hz))
        request.check_cancelled()
        request.report_progress(0.5, "changing the voice")
        changed = self.call(
            sound, "Change gender", floor_hz, ceiling_hz, formant, median_hz * pitch_ratio,
            float(options["pitch_range_factor"]), float(options["duration_factor"]),
        )
        audio = np.asarray(changed.values[0], dtype=np.float32)
        return GenerateResult(audio=np.clip(audio, -1.0, 1.0), sample_rate=int(changed.sampling_frequency))
