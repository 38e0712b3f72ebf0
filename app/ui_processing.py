"""The shared pre/post-processing controls: sliders that map one-to-one onto the pipeline's
``PreOptions`` / ``PostOptions`` fields (sent as plain dicts), plus presets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import gradio as gr

from app.errors import UserFacingError

MODEL_RATE = "model's own"
SAMPLE_RATES = [MODEL_RATE, "16000", "22050", "24000", "32000", "44100", "48000"]


@dataclass
class ProcessingControls:
    pre: Mapping[str, gr.components.Component]
    post: Mapping[str, gr.components.Component]
    pre_box: gr.Accordion
    """Shown only for architectures that take a recording."""

    @property
    def components(self) -> List[gr.components.Component]:
        return list(self.pre.values()) + list(self.post.values())

    def to_dicts(self, values: List[Any]) -> Dict[str, Dict[str, Any]]:
        """Control values (in ``components`` order) -> {"preprocess": {...}, "postprocess": {...}}."""
        pre_values = dict(zip(self.pre, values[: len(self.pre)], strict=True))
        post_values = dict(zip(self.post, values[len(self.pre):], strict=True))
        pre_values["loudness_lufs"] = pre_values["loudness_lufs"] or None  # 0 = off
        post_values["loudness_lufs"] = post_values["loudness_lufs"] or None
        rate = post_values["sample_rate_hz"]
        post_values["sample_rate_hz"] = None if rate in (None, "", MODEL_RATE) else int(rate)
        return {"preprocess": pre_values, "postprocess": post_values}

    def from_dicts(self, preprocess: Dict[str, Any], postprocess: Dict[str, Any]) -> List[Any]:
        """The inverse, as component values (in ``components`` order), for loading a preset."""
        pre = dict(preprocess, loudness_lufs=preprocess.get("loudness_lufs") or 0)
        post = dict(postprocess, loudness_lufs=postprocess.get("loudness_lufs") or 0)
        post["sample_rate_hz"] = str(post["sample_rate_hz"]) if post.get("sample_rate_hz") else MODEL_RATE
        return [pre[name] for name in self.pre] + [post[name] for name in self.post]


def build_processing_controls(default_pre: Dict[str, Any], default_post: Dict[str, Any], show_pre: bool = True) -> ProcessingControls:
    pre_loudness = default_pre["loudness_lufs"] or 0
    post_loudness = default_post["loudness_lufs"] or 0
    with gr.Accordion("Preprocessing (input recordings)", open=False, visible=show_pre) as pre_box:
        pre = {
            "highpass_hz": gr.Slider(0, 500, value=default_pre["highpass_hz"], step=5, label="High-pass cutoff (Hz, 0 = off)"),
            "noise_reduction": gr.Slider(0, 1, value=default_pre["noise_reduction"], step=0.05, label="Noise reduction (0 = off)"),
            "trim_silence": gr.Checkbox(value=default_pre["trim_silence"], label="Crop silence at start and end"),
            "trim_threshold_db": gr.Slider(-90, -10, value=default_pre["trim_threshold_db"], step=1, label="Silence threshold (dBFS)"),
            "pitch_semitones": gr.Slider(-24, 24, value=default_pre["pitch_semitones"], step=0.5, label="Pitch shift (semitones)"),
            "loudness_lufs": gr.Slider(-40, 0, value=pre_loudness, step=0.5, label="Loudness (LUFS, 0 = off)"),
        }
    with gr.Accordion("Post-processing (results)", open=False):
        post = {
            "speed": gr.Slider(0.25, 4, value=default_post["speed"], step=0.05, label="Speed (pitch kept)"),
            "pitch_semitones": gr.Slider(-24, 24, value=default_post["pitch_semitones"], step=0.5, label="Pitch shift (semitones)"),
            "noise_reduction": gr.Slider(0, 1, value=default_post["noise_reduction"], step=0.05, label="Noise reduction (0 = off)"),
            "trim_silence": gr.Checkbox(value=default_post["trim_silence"], label="Trim silence at start and end"),
            "trim_threshold_db": gr.Slider(-90, -10, value=default_post["trim_threshold_db"], step=1, label="Silence threshold (dBFS)"),
            "loudness_lufs": gr.Slider(-40, 0, value=post_loudness, step=0.5, label="Loudness (LUFS, 0 = peak-normalise only)"),
            "true_peak_db": gr.Slider(-9, 0, value=default_post["true_peak_db"], step=0.1, label="True-peak ceiling (dBTP)"),
            "fade_in_ms": gr.Slider(0, 2000, value=default_post["fade_in_ms"], step=10, label="Fade in (ms)"),
            "fade_out_ms": gr.Slider(0, 2000, value=default_post["fade_out_ms"], step=10, label="Fade out (ms)"),
            "sample_rate_hz": gr.Dropdown(SAMPLE_RATES, value=MODEL_RATE, label="Output sample rate (Hz)"),
        }
    return ProcessingControls(pre, post, pre_box)


def parse_json_object(value: Any, what: str) -> Optional[Dict[str, Any]]:
    """API input: a JSON object (or nothing)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise UserFacingError("%s must be a JSON object: %s" % (what, exc)) from exc
    if not isinstance(value, dict):
        raise UserFacingError("%s must be a JSON object" % what)
    return value
