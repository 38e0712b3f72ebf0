"""Demucs source separation (a song -> vocals + accompaniment), through the ``demucs`` package's own ``Separator``
(PyPI 4.1.0, MIT).

The builtin characters are upstream's pretrained separation models. Each is a shared asset folder under the data
folder's ``assets/`` (``demucs_<name>/``) laid out as upstream's local model repository: ``<name>.yaml`` (the bag:
its models' signatures, weights, segment) beside one ``<sig>-<checksum>.th`` per model, as upstream publishes them.
``Separator(model=name, repo=folder)`` reads them there and nothing is fetched (upstream's hub lookup only runs
without a repo). Upstream's loader unpickles its checkpoints in full (``{'klass': HTDemucs, 'kwargs': {..., 'segment':
Fraction(39, 5)}, 'state': ...}``): here every ``torch.load`` it makes is weights-only, with exactly upstream's three
model classes and ``fractions.Fraction`` allowed as globals; a file that needs anything else is refused, unrun.

A job: the song at 44.1 kHz, ``(samples,)`` or ``(channels, samples)`` (mono is duplicated to stereo, as upstream
does); the result is ``(2 stems, 2 channels, samples)`` float32 at 44.1 kHz, as long as the song: "vocals" and
"accompaniment", the sum of the model's other sources (upstream's ``--two-stems vocals``). Upstream splits the song
into segments of at most the model's trained length (memory bounded by a segment, not by the song), reports each one
here as progress and checks for a cancel before each.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import random
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from runtimes.adapter import Adapter, GenerateRequest, GenerateResult, ModelRef
from runtimes.adapters.common import asset_path, load_failure, missing_asset
from runtimes.errors import BadRequestError
from runtimes.manifest import Asset, Manifest, Option

logger = logging.getLogger(__name__)

SAMPLE_RATE = 44100
CHANNELS = 2
STEMS = ("vocals", "accompaniment")
VOCALS = "vocals"
ROOT_URL = "https://dl.fbaipublicfiles.com/demucs/"
YAML_URL = "https://github.com/facebookresearch/demucs/raw/main/demucs/remote/"
SILENT_PEAK = 1e-4
"""A song whose loudest sample is below this (-80 dBFS) has nothing to separate."""
MAX_SHIFT_S = 0.5
"""Upstream's shift trick moves the song by up to half a second each pass."""
PASSIVE_THREADS = "PASSIVE"
"""OpenMP's idle threads sleep instead of spinning between torch's operators: on this busy two-core machine a tiny model's
separation took 9.6 s spinning, 3.9 s passive (load average 5.5)."""


class Model:
    """One of upstream's pretrained models: its files (under ``ROOT_URL``), what it is, for a person."""

    def __init__(self, label: str, files: Sequence[str]) -> None:
        self.label = label
        self.files = tuple(files)

    @property
    def signatures(self) -> List[str]:
        return [os.path.basename(f).split("-", 1)[0] for f in self.files]


MODELS: Dict[str, Model] = {
    "htdemucs": Model("Hybrid Transformer Demucs v4 (the default; drums, bass, other, vocals)",
                      ("hybrid_transformer/955717e8-8726e21a.th",)),
    "htdemucs_ft": Model("Hybrid Transformer Demucs v4, fine-tuned per source (a bag of 4 models: 4x slower, a little better)",
                         ("hybrid_transformer/f7e0c4bc-ba3fe64a.th", "hybrid_transformer/d12395a8-e57c48e6.th",
                          "hybrid_transformer/92cfc3b6-ef3bcb9c.th", "hybrid_transformer/04573f0d-f3cf25b2.th")),
    "htdemucs_6s": Model("Hybrid Transformer Demucs v4, 6 sources (adds guitar and piano)",
                         ("hybrid_transformer/5c90dfd2-34c22ccb.th",)),
    "hdemucs_mmi": Model("Hybrid Demucs v3 (retrained on MUSDB-HQ + 800 songs)", ("hybrid_transformer/75fc33f5-1941ce65.th",)),
    "mdx_extra": Model("Demucs v3 MDX challenge model with extra training data (a bag of 4)",
                       ("mdx_final/e51eebcc-c1b80bdd.th", "mdx_final/a1d90b5c-ae9d2452.th", "mdx_final/5d2d6c55-db83574e.th",
                        "mdx_final/cfa93e08-61801ae1.th")),
}


def asset_name(model: str) -> str:
    return "demucs_%s" % model


MANIFEST = Manifest(
    architecture="demucs",
    display_name="Demucs (song -> vocals + accompaniment)",
    version="1",
    capabilities=("separate",),
    needs_text=False,
    needs_audio=True,
    input_sample_rate=SAMPLE_RATE,
    options=(
        Option("shifts", "Shifts (random time shifts averaged)", "int", 1, 0, 10, 1,
               help="upstream's shift trick: each shift is one more pass over the song, moved by up to 0.5 s, and the passes "
                    "are averaged (a little cleaner, that many times slower); 0: one pass, unshifted"),
        Option("overlap", "Overlap between segments", "float", 0.25, 0.0, 0.9, 0.05,
               help="how much neighbouring segments overlap (cross-faded); more is smoother at the joins and slower"),
        Option("segment_s", "Segment length (s; 0 = the model's own)", "float", 0.0, 0.0, 60.0, 0.1,
               help="the song is separated this many seconds at a time (memory grows with it); transformer models (htdemucs*) "
                    "take at most the length they were trained on (7.8 s)"),
        Option("split", "Split into segments", "bool", True,
               help="off: the whole song in one pass (memory grows with the song; transformer models need it on for songs "
                    "longer than their segment)"),
        Option("seed", "Seed of the random shifts (-1 = a new one each time)", "int", 0, -1, 2 ** 31 - 1, 1,
               help="the same seed, song and options give the same stems"),
    ),
    builtin_characters={name: model.label for name, model in MODELS.items()},
    assets=tuple(
        Asset(asset_name(name), "Demucs model %s" % name,
              "upstream's %s.yaml (%s%s.yaml) and %s, in one folder" % (name, YAML_URL, name, ", ".join(ROOT_URL + f for f in model.files)),
              needed_for="")
        for name, model in MODELS.items()
    ),
    licence="MIT (demucs code and Meta's pretrained Demucs weights, released under the repository's MIT licence)",
    stems=STEMS,
)


def signatures_of(bag_file: str) -> List[str]:
    """The models a bag's yaml names (``models: ['955717e8', ...]``), read without a YAML parser."""
    try:
        with open(bag_file, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequestError("%s cannot be read: %s" % (os.path.basename(bag_file), exc)) from None
    found = re.search(r"^models\s*:\s*\[([^\]]*)\]", text, re.MULTILINE)
    if not found:
        raise BadRequestError("%s is not a Demucs model list (it has no 'models: [...]')" % os.path.basename(bag_file))
    return [s.strip().strip("'\"") for s in found.group(1).split(",") if s.strip()]


def model_folder(name: str) -> str:
    """The asset folder of a builtin model, checked to hold its yaml and a file for each model it names."""
    folder = asset_path(asset_name(name))
    model = MODELS[name]
    how = "upstream's %s.yaml and %s" % (name, ", ".join(os.path.basename(f) for f in model.files))
    bag_file = os.path.join(folder, "%s.yaml" % name)
    if not os.path.isfile(bag_file):
        raise missing_asset("Demucs", "model %s" % name, asset_name(name), how)
    for sig in signatures_of(bag_file):
        if not glob.glob(os.path.join(folder, glob.escape(sig) + "-*.th")) and not os.path.isfile(os.path.join(folder, sig + ".th")):
            raise missing_asset("Demucs", "model %s (its part %s)" % (name, sig), asset_name(name), how)
    return folder


def stereo(audio: Any) -> np.ndarray:
    """The song as ``(2, samples)`` float32; BadRequestError naming what is wrong with it."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.ndim != 2:
        raise BadRequestError("Demucs takes a song shaped (samples,) or (channels, samples); got shape %s" % (tuple(audio.shape),))
    channels, samples = audio.shape
    if channels > CHANNELS and samples <= CHANNELS:
        raise BadRequestError("the song is shaped %s, which looks like (samples, channels): send (channels, samples)"
                              % (tuple(audio.shape),))
    if channels > CHANNELS:
        raise BadRequestError("Demucs separates mono or stereo songs; this one has %d channels (mix it down to stereo)" % channels)
    if not samples:
        raise BadRequestError("the song is empty (0 samples)")
    if not np.issubdtype(audio.dtype, np.floating):
        raise BadRequestError("the song's samples must be floating point (-1..1), got %s" % audio.dtype)
    audio = audio.astype(np.float32)
    if not np.isfinite(audio).all():
        raise BadRequestError("the song holds NaN or infinite samples")
    if float(np.abs(audio).max()) < SILENT_PEAK:
        raise BadRequestError("the song is silent (its loudest sample is below -80 dBFS): nothing to separate")
    return np.repeat(audio, CHANNELS, axis=0) if channels == 1 else audio


class ObservedShifts:
    """Python's ``random`` module as upstream's ``apply_model`` sees it: the same draws, the last shift noted (how much
    longer that pass over the song is, so how many segments it has)."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.last = 0

    def randint(self, low: int, high: int) -> int:
        self.last = int(self.module.randint(low, high))
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)


class Progress:
    """Upstream's per-segment callback turned into the job's progress and cancel checks: each pass (a model of the bag,
    a shift) is an equal share of the job, its segments counted when it starts (the song, up to 0.5 s longer when
    shifted, over the segment's stride)."""

    def __init__(self, request: GenerateRequest, shifts_seen: ObservedShifts, segments_s: List[float], shifts: int,
                 overlap: float, split: bool, samples: int) -> None:
        self.request, self.shifts_seen = request, shifts_seen
        self.shifts, self.split, self.samples = shifts, split, samples
        self.passes = max(shifts, 1)
        self.models = len(segments_s)
        self.strides = [max(1, int((1 - overlap) * int(SAMPLE_RATE * s))) for s in segments_s]
        self.current: Tuple[int, int] = (-1, -1)
        self.count = self.in_pass = self.done = 0

    def __call__(self, state: Dict[str, Any]) -> None:
        index, shift = int(state.get("model_idx_in_bag", 0)), int(state.get("shift_idx", 0))
        if state.get("state") == "start":
            self.request.check_cancelled()  # between segments: upstream stops the rest of the song
            if (index, shift) != self.current:  # a new pass: its shift was just drawn
                self.current, self.in_pass = (index, shift), 0
                max_shift = int(MAX_SHIFT_S * SAMPLE_RATE)
                length = self.samples + max_shift - self.shifts_seen.last if self.shifts else self.samples
                self.count = math.ceil(length / self.strides[min(index, self.models - 1)]) if self.split else 1
            return
        self.done += 1
        self.in_pass = min(self.in_pass + 1, self.count)
        fraction = (index * self.passes + shift + self.in_pass / self.count) / (self.models * self.passes)
        where = ["segment %d of %d" % (self.in_pass, self.count)]
        if self.passes > 1:
            where.append("shift %d of %d" % (shift + 1, self.passes))
        if self.models > 1:
            where.append("model %d of %d" % (index + 1, self.models))
        self.request.report_progress(min(1.0, fraction), "separated %s" % ", ".join(where))


class DemucsAdapter(Adapter):
    manifest = MANIFEST

    def __init__(self) -> None:
        self.torch: Any = None
        self.api: Any = None
        self.device = "cpu"
        self.shifts_seen = ObservedShifts(random)

    def load_shared(self, device: str) -> None:
        if "torch" not in sys.modules:  # read once, when torch's OpenMP starts
            os.environ.setdefault("OMP_WAIT_POLICY", PASSIVE_THREADS)
        import demucs.api
        import demucs.apply
        import torch

        self.torch, self.api, self.device = torch, demucs.api, device
        demucs.apply.random = self.shifts_seen

    def _weights_only(self) -> Tuple[Callable[..., Any], List[str]]:
        """``torch.load`` as upstream's loader calls it (``weights_only=False``), made weights-only with upstream's model
        classes and ``Fraction`` allowed; the list names the file it last read (for a message)."""
        from fractions import Fraction

        from demucs.demucs import Demucs
        from demucs.hdemucs import HDemucs
        from demucs.htdemucs import HTDemucs

        torch = self.torch
        load = torch.load
        reading = [""]

        def weights_only_load(path: Any, *args: Any, **kwargs: Any) -> Any:
            reading[0] = os.path.basename(str(path))
            kwargs["weights_only"] = True
            with torch.serialization.safe_globals([Demucs, HDemucs, HTDemucs, Fraction]):
                return load(path, *args, **kwargs)

        return weights_only_load, reading

    def load(self, model: ModelRef) -> Dict[str, Any]:
        from demucs.repo import ModelLoadingError

        if model.path is not None or model.character not in MODELS:
            raise BadRequestError("Demucs has no model %r: its models are %s (shared assets, not character folders)"
                                  % (model.character if model.path is None else model.path, ", ".join(MODELS)))
        name = model.character
        folder = model_folder(name)
        torch = self.torch
        load, (weights_only_load, reading) = torch.load, self._weights_only()
        self.report_progress(None, "loading Demucs %s" % name)
        torch.load = weights_only_load
        try:
            separator = self.api.Separator(model=name, repo=Path(folder), device=self.device, progress=False)
        except ModelLoadingError as exc:  # upstream's own words: a checksum that does not match its file's name
            raise BadRequestError("Demucs %s could not be loaded: %s (an incomplete or changed download?)" % (name, exc)) from exc
        except SystemExit as exc:  # upstream's fatal() exits for a quantized model without diffq
            raise BadRequestError("Demucs %s could not be loaded: %s needs the diffq package (quantized models are not offered)"
                                  % (name, reading[0])) from exc
        except Exception as exc:  # foreign code: translate once, naming the file it was reading
            raise BadRequestError("Demucs %s: %s" % (name, load_failure(reading[0] or name, exc))) from exc
        finally:
            torch.load = load
        bag = separator.model
        sources = list(bag.sources)
        if VOCALS not in sources:
            raise BadRequestError("Demucs %s has no vocals source (its sources: %s)" % (name, ", ".join(sources)))
        if int(bag.samplerate) != SAMPLE_RATE or int(bag.audio_channels) != CHANNELS:
            raise BadRequestError("Demucs %s works at %d Hz, %d channels; this worker takes %d Hz stereo"
                                  % (name, bag.samplerate, bag.audio_channels, SAMPLE_RATE))
        bag.to(self.device)  # the weights stay on the device; the song and stems stay in memory, a segment goes over at a time
        members = list(getattr(bag, "models", [bag]))
        max_segment_s = float(getattr(bag, "max_allowed_segment", float("inf")))
        logger.info("Demucs %s: %d model(s) (%s), sources %s, segment %s s, on %s", name, len(members),
                    ", ".join(sorted({type(m).__name__ for m in members})), sources, [float(m.segment) for m in members], self.device)
        return {"name": name, "separator": separator, "sources": sources, "segments_s": [float(m.segment) for m in members],
                "max_segment_s": max_segment_s, "parameters": sum(int(p.numel()) for p in bag.parameters())}

    def details(self, character: Dict[str, Any]) -> Dict[str, Any]:
        return {"sample_rate": SAMPLE_RATE, "stems": list(STEMS), "sources": character["sources"],
                "models": len(character["segments_s"]), "parameters": character["parameters"], "segment_s": min(character["segments_s"]),
                "max_segment_s": None if math.isinf(character["max_segment_s"]) else character["max_segment_s"]}

    def generate(self, character: Dict[str, Any], request: GenerateRequest) -> GenerateResult:
        torch = self.torch
        options = request.options
        if request.audio is None:
            raise BadRequestError("Demucs needs a song (audio) to separate")
        rate = int(request.audio_sample_rate or 0)
        if rate <= 0:
            raise BadRequestError("the song came without its sample rate")
        song = stereo(request.audio)
        shifts, overlap, split = int(options["shifts"]), float(options["overlap"]), bool(options["split"])
        segment_s = float(options["segment_s"]) or None
        name, limit = character["name"], character["max_segment_s"]
        if segment_s is not None and segment_s > limit:
            raise BadRequestError("segment_s %g is longer than Demucs %s takes (at most %g s, the length it was trained on)"
                                  % (segment_s, name, limit))
        samples_out = song.shape[1] if rate == SAMPLE_RATE else int(song.shape[1] * SAMPLE_RATE // rate)
        at_once = samples_out + (int(MAX_SHIFT_S * SAMPLE_RATE) if shifts else 0)  # a shifted pass is up to 0.5 s longer
        if not split and at_once > limit * SAMPLE_RATE:
            raise BadRequestError("with split off, Demucs %s takes at most %g s at once; this song is %.1f s%s: turn split on"
                                  % (name, limit, samples_out / SAMPLE_RATE, " (+0.5 s for the shifts)" if shifts else ""))
        segments_s = [segment_s or s for s in character["segments_s"]]
        seed = int(options["seed"])
        random.seed(seed if seed >= 0 else None)  # upstream draws its shifts from Python's random module
        progress = Progress(request, self.shifts_seen, segments_s, shifts, overlap, split, samples_out)
        separator = character["separator"]
        separator.update_parameter(device=self.device, shifts=shifts, overlap=overlap, split=split, segment=segment_s,
                                   callback=progress)
        wav = torch.from_numpy(song)
        with torch.inference_mode():
            _, stems = separator.separate_tensor(wav, rate)
            vocals = stems[VOCALS]
            accompaniment = torch.zeros_like(vocals)
            for source, audio in stems.items():  # upstream's --two-stems: the other sources added
                if source != VOCALS:
                    accompaniment += audio
            out = torch.stack([vocals, accompaniment]).cpu().numpy().astype(np.float32)
        request.details.update({"model": name, "sources": character["sources"], "segments": progress.done, "shifts": shifts,
                                "overlap": overlap, "split": split, "segment_s": min(segments_s), "seed": seed,
                                "resampled_from_hz": rate if rate != SAMPLE_RATE else None})
        logger.info("Demucs %s separated %.1f s (%d segment passes; shifts %d, overlap %g, split %s, segment %s s)", name,
                    out.shape[-1] / SAMPLE_RATE, progress.done, shifts, overlap, split, segment_s or "the model's")
        return GenerateResult(audio=out, sample_rate=SAMPLE_RATE)
