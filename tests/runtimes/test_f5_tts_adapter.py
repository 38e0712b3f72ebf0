"""F5-TTS through the supervisor, in its own real env (f5-tts 1.1.22, CPU torch), with tiny random shared assets built by
the packages' own classes (tests/builders/build_f5_tts_character.py: a DiT of dim 64 and depth 2, a one-layer Vocos, a
tiny Whisper) and saved voices written as the app writes them. Random weights say nothing about the voice: the audio
is checked by its rate, length and finiteness, the options where upstream receives them (in the env, with the network
gone), the conditioning by what the job's details say."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import pytest

from models.catalogue import load_catalogue
from runtimes.adapters.f5_tts import MANIFEST, CrossFader, F5TTSAdapter, clipped_share
from runtimes.environments import EnvSpec
from runtimes.errors import BadRequestError, RemoteError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, JobResult, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT, SupervisorFactory
from tests.contract import adapter_contract, voiced_phrases
from tests.f5_tts_fixtures import (
    SAID_BY_THE_TINY_RECOGNIZER,
    VOICE_ID,
    VOICE_TRANSCRIPT,
    f5_tts_built,
    f5_tts_models,
    f5_tts_python,
    f5_tts_spec,
    write_voice,
)

__all__ = ["f5_tts_built", "f5_tts_models", "f5_tts_python", "f5_tts_spec"]  # fixtures this module uses by name

RATE = 24000
QUICK = {"nfe_step": 8, "seed": 1}
"""Eight flow steps are plenty where the steps are not the subject (the tiny DiT is quick either way)."""
REFERENCE_TEXT = "Hello there, this is how my voice sounds."

TestContract = pytest.mark.heavy_env(adapter_contract("f5_tts", VOICE_ID, models="f5_tts_models", cancel_options=QUICK))


def job(models: Path, text: str = "Hello there.", character: str = VOICE_ID, audio: Optional[np.ndarray] = None,
        audio_rate: int = 44100, path: Optional[Path] = None, **options: Any) -> JobRequest:
    folder = path if path is not None else (None if character == "reference" else models / "characters" / character)
    return JobRequest(architecture="f5_tts", character=character, character_path=str(folder) if folder else None, text=text,
                      audio=audio, audio_sample_rate=audio_rate if audio is not None else None,
                      options=MANIFEST.resolve_options(dict(QUICK, **options)))


def seconds(result: JobResult) -> float:
    return result.audio.size / result.sample_rate


@pytest.fixture(scope="module")
def f5(tmp_path_factory: pytest.TempPathFactory, f5_tts_spec: EnvSpec, f5_tts_python: Path, f5_tts_models: Path) -> Iterator[Supervisor]:
    """One warm worker for the module (its import takes ~10 s); every test leaves it serving."""
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path_factory.mktemp("run"), assets_dir=f5_tts_models / "assets",
                                  graceful_stop_s=30.0)
    supervisor = Supervisor(settings, {"f5_tts": f5_tts_spec}, lambda spec, progress: f5_tts_python, memory=SystemRamSource())
    yield supervisor
    supervisor.shutdown()


# --- the manifest, voice folders and the join (no env) ---------------------------------------------------------------

def test_the_manifest_declares_a_zero_shot_model_with_its_licence() -> None:
    assert MANIFEST.zero_shot and MANIFEST.capabilities == ("tts",) and MANIFEST.needs_text and not MANIFEST.needs_audio
    assert "CC-BY-NC-4.0" in MANIFEST.licence and "non-commercial" in MANIFEST.licence and MANIFEST.watermark == ""
    assert MANIFEST.reference is not None and not MANIFEST.reference.required
    assert (MANIFEST.reference.min_s, MANIFEST.reference.max_s) == (2.0, 30.0)
    assert list(MANIFEST.builtin_characters) == ["reference"] and MANIFEST.detect is None
    assert [(a.name, a.needed_for) for a in MANIFEST.assets] == [("f5_tts_v1_base", ""), ("vocos_mel_24khz", ""),
                                                                  ("asr_whisper", "auto_transcribe")]
    defaults = MANIFEST.resolve_options({})
    assert (defaults["nfe_step"], defaults["cfg_strength"], defaults["sway_sampling_coef"], defaults["speed"]) == (32, 2.0, -1.0, 1.0)
    assert (defaults["cross_fade_duration"], defaults["target_rms"], defaults["seed"], defaults["remove_silence"]) == (0.15, 0.1, -1, False)
    assert MANIFEST.length_factor({"speed": 2.0}) == 0.5 and MANIFEST.speed_options(1.5) == {"speed": 1.5}
    multi = next(o for o in MANIFEST.options if o.name == "reference_text")
    assert "one speaker" in multi.help.lower()  # a recording of several voices is not caught: the help says so


def test_describe_reads_a_saved_voice_and_says_what_is_wrong(tmp_path: Path) -> None:
    good = write_voice(tmp_path / "good", voiced_phrases(22050, 3.0), 22050, "Some words.")
    info = F5TTSAdapter.describe(str(good))
    assert info.usable and info.extras == ["3.0 s recording", "transcript"]
    untyped = F5TTSAdapter.describe(str(write_voice(tmp_path / "untyped", voiced_phrases(22050, 3.0), 22050)))
    assert untyped.usable and "no transcript" in untyped.extras[1]
    short = F5TTSAdapter.describe(str(write_voice(tmp_path / "short", voiced_phrases(22050, 1.0), 22050, "Hi.")))
    assert not short.usable and "1.0 s; it must be at least 2 s" in short.problem
    (tmp_path / "empty").mkdir()
    empty = F5TTSAdapter.describe(str(tmp_path / "empty"))
    assert not empty.usable and "reference.wav and voice.json" in empty.problem
    (tmp_path / "good" / "voice.json").write_text("[1, 2]")
    assert "not a JSON object" in F5TTSAdapter.describe(str(good)).problem


def test_pieces_cross_faded_one_at_a_time_join_as_one_take() -> None:
    """Upstream fades each chunk into the last (linear, over the cross-fade): the pieces, each held back by the fade until the
    next arrives, add up to that take."""
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal(n).astype(np.float32) for n in (1000, 50, 700)]
    fade = 120
    expected = chunks[0].astype(np.float64)
    for chunk in chunks[1:]:
        n = min(fade, expected.size, chunk.size)
        ramp = np.linspace(0, 1, n)
        expected = np.concatenate([expected[:-n], expected[-n:] * (1 - ramp) + chunk[:n] * ramp, chunk[n:]])
    fader = CrossFader(fade)
    pieces = [fader.add(chunk) for chunk in chunks] + [fader.finish()]
    assert pieces[0].size == 1000 - fade
    np.testing.assert_allclose(np.concatenate(pieces), expected, atol=1e-6)
    assert np.concatenate([CrossFader(0).add(c) for c in chunks]).size == 1750


def test_a_clipped_recording_is_measured() -> None:
    audio = voiced_phrases(24000, 3.0)
    assert clipped_share(audio) == 0.0
    loud = np.clip(audio * 20, -1, 1)
    assert clipped_share(loud) > 0.3


# --- in the env -------------------------------------------------------------------------------------------------------

IN_ENV = r"""
import json, os, socket, sys
reached = []
def no_network(*args, **kwargs):
    reached.append(repr(args[1:] or args)[:80])
    raise OSError("no network in this test")
socket.socket.connect = socket.socket.connect_ex = no_network
socket.getaddrinfo = socket.create_connection = no_network
import numpy as np
from runtimes.protocol import ASSETS_ENV
os.environ[ASSETS_ENV] = sys.argv[1]
from runtimes.adapter import GenerateRequest, ModelRef
from runtimes.adapters.f5_tts import MANIFEST, F5TTSAdapter
def voiced_phrases(rate, seconds):  # tests.contract's (it imports pytest, which this env lacks)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(160 + 25 * np.sin(2 * np.pi * 1.5 * t)) / rate
    return np.asarray(sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2 * ((t % 1.6) < 1.2), dtype=np.float32)
adapter = F5TTSAdapter()
adapter.load_shared("cpu")
import f5_tts.infer.utils_infer as infer
from f5_tts.model import CFM
sampled, batches, silences = [], [], []
sample = CFM.sample
def observed_sample(self, cond, text, duration, **kwargs):
    frames = int(cond.shape[-1]) // 256 if cond.ndim == 2 else int(cond.shape[1])  # a waveform, or a mel
    sampled.append({"steps": kwargs.get("steps"), "cfg_strength": kwargs.get("cfg_strength"), "duration": int(duration),
                    "sway_sampling_coef": kwargs.get("sway_sampling_coef"), "cond": frames})
    return sample(self, cond, text, duration, **kwargs)
CFM.sample = observed_sample
batch = infer.infer_batch_process
def observed_batch(ref_audio, ref_text, gen_text_batches, *args, **kwargs):
    batches.append({"texts": list(gen_text_batches), "ref_text": ref_text,
                    **{k: kwargs.get(k) for k in ("target_rms", "cross_fade_duration", "speed", "nfe_step")}})
    return batch(ref_audio, ref_text, gen_text_batches, *args, **kwargs)
infer.infer_batch_process = observed_batch
remove = infer.remove_silence_for_generated_wav
infer.remove_silence_for_generated_wav = lambda path: silences.append(os.path.basename(path)) or remove(path)
character = adapter.load(ModelRef("reference"))
reference = voiced_phrases(44100, 4.0)
found = {"runs": {}}
def run(name, text, whole=False, **options):
    del sampled[:], batches[:], silences[:]
    request = GenerateRequest(text=text, audio=reference, audio_sample_rate=44100,
                              options=MANIFEST.resolve_options(dict({"reference_text": "Hello there, this is my voice."}, **options)))
    pieces = [adapter.generate(character, request)] if whole else list(adapter.stream(character, request))
    audio = np.concatenate([p.audio for p in pieces])
    found["runs"][name] = {"sampled": list(sampled), "batches": list(batches), "silences": list(silences), "samples": int(audio.size),
                           "rates": sorted({p.sample_rate for p in pieces}), "finite": bool(np.isfinite(audio).all()),
                           "head": [round(float(v), 6) for v in audio[1000:1010]], "details": request.details}
run("options", "Hello there, how are you today?", nfe_step=7, cfg_strength=3.5, sway_sampling_coef=-0.4, target_rms=0.2,
    cross_fade_duration=0.3, seed=5, remove_silence=True)
run("speed 1", "Hello there, how are you today?", nfe_step=4, seed=5)
run("speed 2", "Hello there, how are you today?", nfe_step=4, seed=5, speed=2.0)
run("seed 5 again", "Hello there, how are you today?", nfe_step=4, seed=5)
run("seed 6", "Hello there, how are you today?", nfe_step=4, seed=6)
run("long", " ".join(["The quick brown fox jumps over the lazy dog."] * 8), nfe_step=4, seed=5, remove_silence=True)
run("long whole", " ".join(["The quick brown fox jumps over the lazy dog."] * 8), whole=True, nfe_step=4, seed=5, remove_silence=True)
found["network"] = reached
found["hub_offline"] = os.environ.get("HF_HUB_OFFLINE")
print(json.dumps(found))
"""


@pytest.mark.heavy_env
def test_in_the_env_offline_the_options_reach_upstreams_calls(f5_tts_python: Path, f5_tts_built: Path, tmp_path: Path) -> None:
    """With the network gone (no socket connects; no network namespace where ``unshare`` can make one): each option is what
    upstream's infer_batch_process and CFM.sample receive, remove_silence runs upstream's, speed 2 plans half the length,
    a seed repeats its take and another seed changes it, and a long text goes in upstream's chunks, one call each."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), HOME=str(home), HF_HUB_OFFLINE="1")
    command = [str(f5_tts_python), "-c", IN_ENV, str(f5_tts_built / "assets")]
    isolated = shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    done = subprocess.run((["unshare", "-n"] if isolated else []) + command, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["network"] == []
    runs = found["runs"]
    options = runs["options"]
    assert [(s["steps"], s["cfg_strength"], s["sway_sampling_coef"]) for s in options["sampled"]] == [(7, 3.5, -0.4)]
    [call] = options["batches"]
    assert (call["target_rms"], call["cross_fade_duration"], call["nfe_step"], call["speed"]) == (0.2, 0.3, 7, 1.0)
    assert call["texts"] == ["Hello there, how are you today?"] and call["ref_text"] == "Hello there, this is my voice. "
    assert options["silences"] == ["take.wav"] and options["details"]["seed"] == 5
    assert all(run["rates"] == [RATE] and run["finite"] for run in runs.values())
    planned = [runs[name]["sampled"][0]["duration"] - runs[name]["sampled"][0]["cond"] for name in ("speed 1", "speed 2")]
    assert planned[1] == pytest.approx(planned[0] / 2, abs=2), planned  # frames planned for the text (the reference's are kept)
    assert runs["speed 2"]["samples"] < 0.6 * runs["speed 1"]["samples"]
    assert runs["seed 5 again"]["head"] == runs["speed 1"]["head"] and runs["seed 6"]["head"] != runs["speed 1"]["head"]
    long = runs["long"]
    assert len(long["batches"]) == long["details"]["chunks"] >= 3 and all(len(b["texts"]) == 1 for b in long["batches"])
    assert " ".join(b["texts"][0] for b in long["batches"]) == " ".join(["The quick brown fox jumps over the lazy dog."] * 8)
    assert len(long["silences"]) == len(long["batches"])  # streamed: each chunk's silences as it comes
    assert len(runs["long whole"]["silences"]) == 1 and len(runs["long whole"]["batches"]) == len(long["batches"])  # the whole take's


@pytest.mark.heavy_env
def test_a_saved_voice_speaks_longer_for_longer_text(f5: Supervisor, f5_tts_models: Path) -> None:
    short = f5.generate(job(f5_tts_models, "Hello there."))
    long = f5.generate(job(f5_tts_models, "Hello there, this sentence is a good deal longer than the first one was."))
    for result in (short, long):
        assert result.sample_rate == RATE and result.audio.dtype == np.float32 and np.isfinite(result.audio).all()
        assert float(np.abs(result.audio).max()) > 1e-3
    assert seconds(long) > 3 * seconds(short)
    assert long.details["transcript"] == VOICE_TRANSCRIPT and long.details["transcript_from"] == "saved voice"


@pytest.mark.heavy_env
def test_a_voice_is_conditioned_once_then_reused(f5: Supervisor, f5_tts_models: Path, tmp_path: Path) -> None:
    voice = write_voice(tmp_path / "fresh", voiced_phrases(22050, 5.0) * 0.8, 22050, "A voice heard for the first time.")
    first = f5.generate(job(f5_tts_models, "Hello there.", "fresh", path=voice))
    second = f5.generate(job(f5_tts_models, "Something else to say.", "fresh", path=voice, seed=2))
    assert first.details["conditioning"] == "computed" and second.details["conditioning"] == "reused"
    assert second.details["conditioning_s"] < first.details["conditioning_s"]  # upstream's reference processing skipped
    assert second.details["transcript"] == "A voice heard for the first time."
    assert second.details["reference_s"] == first.details["reference_s"]
    changed = f5.generate(job(f5_tts_models, "Hello there.", "fresh", path=voice, reference_text="A corrected transcript."))
    assert changed.details["conditioning"] == "computed" and changed.details["transcript_from"] == "typed"
    f5.unload("f5_tts", "fresh", str(voice))


@pytest.mark.heavy_env
def test_the_one_off_reference_speaks_and_a_request_recording_wins_over_the_saved_one(f5: Supervisor, f5_tts_models: Path) -> None:
    recording = voiced_phrases(16000, 6.0)
    one_off = f5.generate(job(f5_tts_models, "Hello there.", "reference", audio=recording, audio_rate=16000,
                              reference_text=REFERENCE_TEXT))
    assert one_off.sample_rate == RATE and one_off.details["transcript"] == REFERENCE_TEXT and one_off.details["transcript_from"] == "typed"
    assert one_off.details["reference_s"] > 4.5  # the 6 s recording (less trimmed silence), not the saved 4 s voice
    over_saved = f5.generate(job(f5_tts_models, "Hello there.", audio=recording, audio_rate=16000, reference_text=REFERENCE_TEXT))
    assert over_saved.details["reference_s"] == one_off.details["reference_s"]
    assert over_saved.details["conditioning"] == "reused"  # the same recording and transcript: one conditioning for both


@pytest.mark.heavy_env
def test_a_reference_without_transcript_is_transcribed_by_the_recognizer(f5: Supervisor, f5_tts_models: Path, tmp_path: Path) -> None:
    voice = write_voice(tmp_path / "untyped", voiced_phrases(24000, 3.5), 24000)
    result = f5.generate(job(f5_tts_models, "Hello there.", "untyped", path=voice))
    assert result.details["transcript_from"] == "speech recognizer"
    assert result.details["transcript"].startswith(SAID_BY_THE_TINY_RECOGNIZER) and result.sample_rate == RATE
    with pytest.raises(BadRequestError, match="no transcript: type what the recording says"):
        f5.generate(job(f5_tts_models, "Hello there.", "untyped", path=voice, auto_transcribe=False))
    f5.unload("f5_tts", "untyped", str(voice))


@pytest.mark.heavy_env
@pytest.mark.parametrize(
    ("character", "audio", "expected"),
    [
        ("reference", None, "record or upload one"),
        ("reference", np.clip(voiced_phrases(24000, 3.0) * 20, -1, 1), "reference recording is clipped: .*% of its samples"),
        ("reference", voiced_phrases(24000, 1.0), "1.0 s; it must be at least 2 s"),
        ("reference", voiced_phrases(24000, 31.0), "31.0 s; it must be at most 30 s"),
        ("no-such-voice", None, "F5-TTS has no character 'no-such-voice'"),
    ],
    ids=["no reference", "clipped", "too short", "too long", "unknown builtin"],
)
def test_bad_references_are_clear_errors(f5: Supervisor, f5_tts_models: Path, character: str, audio: Optional[np.ndarray],
                                         expected: str) -> None:
    request = replace(job(f5_tts_models, "Hello.", character, audio=audio, audio_rate=24000, reference_text=REFERENCE_TEXT),
                      character_path=None)  # the builtin "reference", or a builtin F5-TTS lacks
    with pytest.raises(BadRequestError, match=expected):
        f5.generate(request)
    assert f5.status()[0]["state"] == "ready"


@pytest.mark.heavy_env
def test_a_clipped_or_short_saved_voice_is_refused_naming_it(f5: Supervisor, f5_tts_models: Path, tmp_path: Path) -> None:
    clipped = write_voice(tmp_path / "loud", np.clip(voiced_phrases(24000, 3.0) * 20, -1, 1), 24000, "Loud.")
    with pytest.raises(BadRequestError, match="the saved voice loud is clipped"):
        f5.generate(job(f5_tts_models, "Hello.", "loud", path=clipped))
    short = write_voice(tmp_path / "short", voiced_phrases(24000, 1.0), 24000, "Hi.")
    with pytest.raises(BadRequestError, match="the saved voice short: the reference recording is 1.0 s; it must be at least 2 s"):
        f5.generate(job(f5_tts_models, "Hello.", "short", path=short))
    (tmp_path / "notes").mkdir()
    with pytest.raises(BadRequestError, match="notes is not a saved voice: it needs reference.wav and voice.json"):
        f5.generate(job(f5_tts_models, "Hello.", "notes", path=tmp_path / "notes"))


def assets_without(built: Path, target: Path, left_out: str, replaced: Optional[Dict[str, Path]] = None) -> Path:
    """The built assets as symlinks, less one (and with some files replaced)."""
    target.mkdir()
    for folder in (built / "assets").iterdir():
        if folder.name == left_out:
            continue
        (target / folder.name).mkdir()
        for item in folder.iterdir():
            source = (replaced or {}).get("%s/%s" % (folder.name, item.name), item)
            (target / folder.name / item.name).symlink_to(source)
    return target


@pytest.mark.heavy_env
def test_without_a_recognizer_a_missing_transcript_asks_for_it(make_supervisor: SupervisorFactory, f5_tts_spec: EnvSpec,
                                                               f5_tts_built: Path, f5_tts_models: Path, tmp_path: Path) -> None:
    supervisor = make_supervisor({"f5_tts": f5_tts_spec}, assets_dir=assets_without(f5_tts_built, tmp_path / "assets", "asr_whisper"))
    voice = write_voice(tmp_path / "untyped", voiced_phrases(24000, 3.5), 24000)
    with pytest.raises(BadRequestError, match=r"no speech recognizer is installed \(assets/asr_whisper\): type what the recording says"):
        supervisor.generate(job(f5_tts_models, "Hello.", "untyped", path=voice))
    typed = supervisor.generate(job(f5_tts_models, "Hello.", "untyped", path=voice, reference_text="Some words."))
    assert typed.details["transcript"] == "Some words." and typed.sample_rate == RATE


@pytest.mark.heavy_env
def test_a_missing_vocoder_is_named_and_a_pickled_one_refused(make_supervisor: SupervisorFactory, f5_tts_spec: EnvSpec,
                                                              f5_tts_built: Path, f5_tts_models: Path, tmp_path: Path) -> None:
    missing = make_supervisor({"f5_tts": f5_tts_spec}, assets_dir=assets_without(f5_tts_built, tmp_path / "a", "vocos_mel_24khz"))
    with pytest.raises(RemoteError, match=r"Vocos vocoder is missing.*assets/vocos_mel_24khz"):
        missing.generate(job(f5_tts_models))
    unsafe = assets_without(f5_tts_built, tmp_path / "b", "", {"vocos_mel_24khz/pytorch_model.bin": f5_tts_built / "unsafe.pt"})
    pickled = make_supervisor({"f5_tts": f5_tts_spec}, assets_dir=unsafe)
    with pytest.raises(RemoteError, match="pytorch_model.bin holds pickled Python objects.*refused"):
        pickled.generate(job(f5_tts_models))
    assert not (f5_tts_built / "pwned").exists()


@pytest.mark.heavy_env
def test_streamed_the_first_chunk_is_short(f5: Supervisor, f5_tts_models: Path) -> None:
    """Streamed, upstream's streaming server's chunks: the first a quarter of the usual length, so it is heard early."""
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 6)
    pieces: List[np.ndarray] = []
    result = f5.generate(job(f5_tts_models, text), on_chunk=lambda audio, rate: pieces.append(np.array(audio, copy=True)))
    whole = f5.generate(job(f5_tts_models, text))
    assert len(pieces) >= 3 and pieces[0].size < 0.5 * pieces[-1].size
    assert result.details["chunks"] == len(pieces) > whole.details["chunks"]
    assert np.concatenate(pieces).size == pytest.approx(whole.audio.size, rel=0.2)


def test_the_assets_are_in_the_catalogue_where_the_adapter_reads_them() -> None:
    """The model manager downloads each asset into assets/<name>/ under its save_as names: the names the adapter loads."""
    catalogue = load_catalogue([PROJECT_ROOT / "models" / "catalogues" / "assets.json"])
    assert catalogue.problems == []
    saved = {asset.name: {f.save_as for f in catalogue.entries["f5_tts/asset/%s" % asset.name].files} for asset in MANIFEST.assets}
    assert saved["f5_tts_v1_base"] == {"model_1250000.safetensors", "vocab.txt"}
    assert saved["vocos_mel_24khz"] == {"config.yaml", "pytorch_model.bin"}
    whisper = {"config.json", "generation_config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"}
    assert whisper <= saved["asr_whisper"]
    assert catalogue.entries["f5_tts/asset/f5_tts_v1_base"].license == "cc-by-nc-4.0"
