"""Controllable TalkNet's reference timing end to end: upstream's ``ExtractDuration.get_duration`` (SortAnon/
ControllableTalkNet's core/extract.py: the recording read through NeMo's ``_AudioTextDataset`` as upstream's 16-bit
22050 Hz conversion, the aligner's log-probabilities, its CTC extractor) beside ours (the adapter's path:
``Aligner.log_probs`` + ``ctc_durations``), with the same aligner model and the same tokens. Run in the
controllable_talknet env, given the checkout and an aligner ``.nemo`` (the real ``asr_talknet_aligner.nemo`` where
present; else the tests' tiny one, tests/builders/build_controllable_talknet_character.py):

    data/envs/controllable_talknet/bin/python bench/talknet_reference_equivalence.py /path/to/ControllableTalkNet ALIGNER.nemo

Upstream's module imports TensorFlow's crepe, SPICE, psola and torchcrepe for its pitch: they are not used by
get_duration and stand in as empty modules here. Its ``__init__`` fetches the aligner from NGC and reads its pony
dictionary: the object is made without it, given the same model and NeMo's phoneme vocabulary as its parser.
Recordings: voiced stretches and pauses of several lengths, 16-bit at 22050 Hz (upstream's ffmpeg conversion);
texts said over them. Writes bench/results/talknet_reference_equivalence.txt.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "bench" / "results" / "talknet_reference_equivalence.txt"
RATE = 22050
CASES = [("Oh, oh.", [0.25, 0.8, 0.9, 0.6, 0.3]), ("Hello there, friend.", [0.1, 0.5, 0.4, 0.9, 0.2]),
         ("I sing, you sing, we all sing along.", [0.3, 0.7, 0.2, 0.6, 0.5, 1.2, 0.1]), ("Yes.", [0.05, 0.4, 0.05])]


def recording(stretches: List[float], seed: int) -> np.ndarray:
    """Silence and voice by turns (the first silence), 16-bit: harmonics of a gliding pitch, a little noise."""
    rng = np.random.default_rng(seed)
    parts = []
    for index, seconds in enumerate(stretches):
        t = np.arange(int(seconds * RATE)) / RATE
        if index % 2:
            f0 = 140.0 + 60.0 * t / max(seconds, 1e-3)
            phase = 2 * np.pi * np.cumsum(f0) / RATE
            parts.append(0.3 * sum(np.sin(k * phase) / k for k in range(1, 10)) + 0.003 * rng.standard_normal(t.size))
        else:
            parts.append(np.zeros(t.size))
    return np.asarray(np.trunc(np.concatenate(parts) * 32767), dtype=np.int16)


def old_call_forms() -> None:
    """NumPy 2 answering what NeMo 1.8.2's AudioSegment (upstream's reader) asks: ``np.sctypes`` (no arithmetic changes)."""
    if not hasattr(np, "sctypes") or "sctypes" not in np.__dict__:
        np.sctypes = {  # type: ignore[attr-defined]
            "int": [np.int8, np.int16, np.int32, np.int64], "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
            "float": [np.float16, np.float32, np.float64], "complex": [np.complex64, np.complex128], "others": [bool, object, bytes, str]}


def upstream_extract(talknet: Path) -> Any:
    for name in ("crepe", "psola", "tensorflow_hub", "tensorflow", "torchcrepe", "resampy"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.path.insert(0, str(talknet))
    spec = importlib.util.spec_from_file_location("upstream_extract", talknet / "core" / "extract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("talknet", type=Path, help="a checkout of SortAnon/ControllableTalkNet")
    parser.add_argument("aligner", type=Path, help="an aligner .nemo (asr_talknet_aligner.nemo)")
    args = parser.parse_args()
    from runtimes.adapters.controllable_talknet.adapter import TalkNetAdapter

    adapter = TalkNetAdapter()
    adapter.load_shared("cpu")
    from nemo.collections.asr.data.audio_to_text import AudioToCharWithDursF0Dataset
    from nemo.collections.asr.models import EncDecCTCModel
    from scipy.io import wavfile

    from runtimes.adapters.controllable_talknet.aligner import Aligner, ctc_durations

    old_call_forms()
    model = adapter._nemo(str(args.aligner), EncDecCTCModel)
    ours = Aligner(model, "cpu")
    module = upstream_extract(args.talknet)
    vocab = AudioToCharWithDursF0Dataset.make_vocab(notation="phonemes", punct=True, spaces=True, stresses=False, add_blank_at="last")
    commit = ((args.talknet / ".commit").read_text().strip() if (args.talknet / ".commit").is_file()
              else os.popen("git -C %s rev-parse HEAD 2>/dev/null" % args.talknet).read().strip() or "(commit unknown)")
    lines = ["Controllable TalkNet reference timing: upstream's ExtractDuration.get_duration vs ours (Aligner + ctc_durations), CPU",
             "upstream: %s at %s; aligner %s (%d parameters); %s" % (
                 args.talknet, commit, args.aligner.name, sum(p.numel() for p in model.parameters()), time.strftime("%Y-%m-%d")), ""]
    same = 0
    with tempfile.TemporaryDirectory(prefix="talknet-ref-") as folder:
        theirs = object.__new__(module.ExtractDuration)  # upstream's __init__ would fetch the model and read its dictionary
        theirs.asr_model, theirs.run_path, theirs.parser, theirs.device = model, folder, vocab, "cpu"
        os.makedirs(os.path.join(folder, "temp"))
        for index, (text, stretches) in enumerate(CASES):
            audio = recording(stretches, index)
            name = "case%d.wav" % index
            wavfile.write(os.path.join(folder, "temp", name + "_conv.wav"), RATE, audio)
            tokens = [int(t) for t in vocab.encode(text)]
            started = time.perf_counter()
            upstream = np.asarray(theirs.get_duration(name, text, tokens))
            upstream_s = time.perf_counter() - started
            started = time.perf_counter()
            mine = ctc_durations(ours.log_probs(audio.astype(np.float32) / 32768.0), tokens, ours.blank)
            ours_s = time.perf_counter() - started
            equal = upstream.shape == mine.shape and np.array_equal(upstream, mine)
            same += int(equal)
            lines.append("  %-40s %5.2f s, %2d tokens, %3d frames: %s (upstream %.2f s, ours %.2f s)" % (
                repr(text), audio.size / RATE, len(tokens), int(mine.sum()), "identical durations" if equal else
                "DIFFER: upstream %s, ours %s" % (upstream.tolist(), mine.tolist()), upstream_s, ours_s))
    lines += ["", "result: %s (%d of %d identical)" % ("PASS" if same == len(CASES) else "FAIL", same, len(CASES))]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
