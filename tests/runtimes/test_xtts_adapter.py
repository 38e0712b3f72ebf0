"""XTTS v2 through the supervisor, in its own real env (coqui-tts 0.28.0, CPU torch), with a tiny random model built by
the package's own classes (tests/builders/build_xtts_character.py) as the shared asset and saved voices as characters.
Random weights say nothing about how the voice sounds: the options are checked where upstream receives them (in the env,
with the network gone), the audio by its rate, length and finiteness, the conditioning by the job's details.

The HiFi-GAN decoder and speaker encoder have fixed sizes (23 M parameters): a sentence takes a second or more on a busy
two-core machine, so the env's cases keep their texts short."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np
import pytest

from runtimes.adapters.xtts import LANGUAGES, MANIFEST, XttsAdapter, reference_problem
from runtimes.environments import EnvSpec
from runtimes.errors import BadRequestError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, JobResult, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT
from tests.contract import adapter_contract, voiced_phrases
from tests.voice_files import write_voice
from tests.xtts_fixtures import UNSPOKEN_LANGUAGE, VOICE_ID, xtts_built, xtts_models, xtts_python, xtts_spec

__all__ = ["xtts_built", "xtts_models", "xtts_python", "xtts_spec"]  # fixtures this module uses by name

RATE = 24000
SEED = {"seed": 7}
TOKEN_SAMPLES = 1024
"""What one of the GPT's audio tokens becomes at 24 kHz: the shortest take (the tiny random GPT may stop after one)."""

TestContract = pytest.mark.heavy_env(pytest.mark.slow(adapter_contract("xtts", VOICE_ID, models="xtts_models")))


def clipped(audio: np.ndarray, share: float) -> np.ndarray:
    """``audio`` with ``share`` of its samples (spread through it) at full scale."""
    out = np.array(audio, dtype=np.float32)
    out[:: int(round(1.0 / share))] = 1.0
    return out


# --- the manifest and voice folders (no env) ---------------------------------------------------------------------------

def test_the_manifest_declares_a_zero_shot_tts_with_its_licence_and_options() -> None:
    assert MANIFEST.zero_shot and MANIFEST.capabilities == ("tts",) and MANIFEST.needs_text and not MANIFEST.needs_audio
    assert "non-commercial" in MANIFEST.licence and "Coqui Public Model License" in MANIFEST.licence and MANIFEST.watermark == ""
    assert MANIFEST.builtin_characters == {"reference": "Any voice: the reference recording given with the request"}
    assert MANIFEST.reference is not None and not MANIFEST.reference.required
    assert (MANIFEST.reference.min_s, MANIFEST.reference.max_s) == (3.0, 30.0)
    assert [asset.name for asset in MANIFEST.assets] == ["xtts_v2"] and MANIFEST.detect is None
    defaults = MANIFEST.resolve_options({})
    assert (defaults["temperature"], defaults["top_p"], defaults["top_k"], defaults["repetition_penalty"]) == (0.75, 0.85, 50, 5.0)
    assert defaults["language"] == "en" and len(LANGUAGES) == 17 and "zh-cn" in LANGUAGES
    assert MANIFEST.length_factor({"speed": 2.0}) == 0.5 and MANIFEST.speed_options(1.5) == {"speed": 1.5}


def test_describe_reads_a_saved_voice_and_says_what_is_wrong_with_one(tmp_path: Path) -> None:
    good = write_voice(tmp_path / "good", voiced_phrases(22050, 5.0), 22050, "hello")
    info = XttsAdapter.describe(str(good))
    assert info.usable and info.problem == "" and list(info.extras) == ["5.0 s recording", "transcript"]
    assert list(XttsAdapter.describe(str(write_voice(tmp_path / "untold", voiced_phrases(22050, 4.0), 22050))).extras)[1] \
        == "no transcript (XTTS needs none)"
    short = XttsAdapter.describe(str(write_voice(tmp_path / "short", voiced_phrases(22050, 2.0), 22050)))
    assert not short.usable and "at least 3 s" in short.problem
    loud = XttsAdapter.describe(str(write_voice(tmp_path / "loud", clipped(voiced_phrases(22050, 5.0), 0.05), 22050)))
    assert not loud.usable and "clipped" in loud.problem
    (tmp_path / "empty").mkdir()
    assert "not a saved voice" in XttsAdapter.describe(str(tmp_path / "empty")).problem


def test_a_reference_is_refused_when_clipped_silent_short_or_long() -> None:
    voice = voiced_phrases(16000, 5.0)
    assert reference_problem(voice, 16000) == ""
    assert reference_problem(clipped(voice, 0.005), 16000) == ""  # a few full-scale peaks are not clipping
    assert "clipped (5.0% of its samples" in reference_problem(clipped(voice, 0.05), 16000)
    assert "silent" in reference_problem(np.zeros(16000 * 5, dtype=np.float32), 16000)
    assert "at most 30 s" in reference_problem(voiced_phrases(16000, 31.0), 16000)


# --- through the supervisor, in the env --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def xtts(tmp_path_factory: pytest.TempPathFactory, xtts_spec: EnvSpec, xtts_python: Path, xtts_models: Path) -> Iterator[Supervisor]:
    """One warm worker for the module (the import and the model's load take seconds), conditioning kept on disk too."""
    yield from supervised(tmp_path_factory.mktemp("run"), xtts_spec, xtts_python, xtts_models, tmp_path_factory.mktemp("conditioning"))


def supervised(run: Path, spec: EnvSpec, python: Path, models: Path, conditioning: Path) -> Iterator[Supervisor]:
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=run, assets_dir=models / "assets", graceful_stop_s=30.0,
                                  conditioning_dir=conditioning, conditioning_architectures=("xtts",))
    supervisor = Supervisor(settings, {"xtts": spec}, lambda spec, progress: python, memory=SystemRamSource())
    yield supervisor
    supervisor.shutdown()


def job(text: str = "Hello there.", voice: Optional[Path] = None, audio: Optional[np.ndarray] = None, audio_rate: int = 16000,
        **options: Any) -> JobRequest:
    return JobRequest(architecture="xtts", character=voice.name if voice is not None else "reference",
                      character_path=str(voice) if voice is not None else None, text=text, audio=audio,
                      audio_sample_rate=audio_rate if audio is not None else None, options=dict(SEED, **options))


def streamed(supervisor: Supervisor, request: JobRequest) -> Tuple[JobResult, List[np.ndarray]]:
    pieces: List[np.ndarray] = []
    result = supervisor.generate(request, on_chunk=lambda audio, rate: pieces.append(np.array(audio, copy=True)))
    return result, pieces


def check_speech(result: JobResult) -> None:
    assert result.sample_rate == RATE and result.audio.dtype == np.float32 and result.audio.ndim == 1
    assert result.audio.size >= TOKEN_SAMPLES and np.isfinite(result.audio).all() and float(np.abs(result.audio).max()) > 1e-3


@pytest.mark.slow
@pytest.mark.heavy_env
def test_a_saved_voice_speaks_and_its_conditioning_is_computed_once(xtts: Supervisor, tmp_path: Path) -> None:
    """The first job in a voice computes its conditioning (upstream's get_conditioning_latents) and keeps it, in memory and
    on disk; the second job in the same voice reuses it. The same seed gives the same take."""
    voice = write_voice(tmp_path / "alto", voiced_phrases(22050, 6.0) * 0.8, 22050, "", made_by="someone")
    first = xtts.generate(job(voice=voice))
    check_speech(first)
    assert first.details["conditioning"] == "computed"
    second = xtts.generate(job(voice=voice))
    assert second.details["conditioning"] == "reused" and second.details["conditioning_from"] == "memory"
    np.testing.assert_array_equal(first.audio, second.audio)
    kept = list((xtts.settings.conditioning_dir or Path()).glob("xtts/xtts/*.npz")) + list(
        (xtts.settings.conditioning_dir or Path()).glob("xtts/*.npz"))
    assert kept, "no conditioning kept on disk under %s" % xtts.settings.conditioning_dir
    with np.load(kept[0], allow_pickle=False) as data:
        assert set(data.files) == {"gpt_cond_latent", "speaker_embedding"}
        assert data["gpt_cond_latent"].shape == (1, 32, 256) and data["speaker_embedding"].shape == (1, 512, 1)
    [loaded] = [c for row in xtts.status() for c in row["loaded"] if c["id"] == voice.name]
    assert loaded["details"]["voice"] == "alto" and loaded["details"]["made_by"] == "someone"
    assert loaded["details"]["sample_rate"] == RATE and UNSPOKEN_LANGUAGE not in loaded["details"]["languages"]


@pytest.mark.slow
@pytest.mark.heavy_env
def test_longer_text_is_longer_audio_one_piece_a_sentence(xtts: Supervisor, xtts_models: Path) -> None:
    """With the same seed, a text that starts with the short one says the same first sentence, then more."""
    voice = xtts_models / "characters" / VOICE_ID
    short, short_pieces = streamed(xtts, job("Hello there.", voice))
    long, long_pieces = streamed(xtts, job("Hello there. How are you today? The sun is out. We walk home.", voice))
    check_speech(long)
    assert len(short_pieces) == 1 and len(long_pieces) == 4
    np.testing.assert_array_equal(long_pieces[0], short_pieces[0])
    assert long.audio.size > short.audio.size
    np.testing.assert_array_equal(np.concatenate(long_pieces), long.audio)
    whole, whole_pieces = streamed(xtts, job("Hello there. How are you today? The sun is out. We walk home.", voice, split_sentences=False))
    assert len(whole_pieces) == 1 and whole.audio.size > 0


@pytest.mark.slow
@pytest.mark.heavy_env
def test_the_one_off_reference_speaks_in_the_requests_recording_which_wins_over_a_saved_voice(xtts: Supervisor, xtts_models: Path) -> None:
    recording = voiced_phrases(16000, 5.0) * 0.6
    first = xtts.generate(job(audio=recording, reference_text="ignored: XTTS needs no transcript"))
    check_speech(first)
    assert first.details["conditioning"] == "computed"
    assert xtts.generate(job(audio=recording)).details["conditioning"] == "reused"
    # a saved voice with a recording in the request speaks in the request's (already computed above: reused, not the voice's)
    voice = xtts_models / "characters" / VOICE_ID
    both = xtts.generate(job(voice=voice, audio=recording))
    np.testing.assert_array_equal(both.audio, first.audio)
    with pytest.raises(BadRequestError, match="give one with the request, or choose a saved voice"):
        xtts.generate(job())


@pytest.mark.slow
@pytest.mark.heavy_env
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"language": "xx"}, "option 'language' must be one of en, es"),
        ({"language": UNSPOKEN_LANGUAGE}, "this XTTS model does not speak 'hi'; it speaks: en, es"),
        ({"audio": clipped(voiced_phrases(16000, 5.0), 0.05)}, r"clipped \(5.0% of its samples at full scale\)"),
        ({"audio": voiced_phrases(16000, 2.0)}, "the reference recording is 2.0 s; it must be at least 3 s"),
        ({"character": "narrator"}, "XTTS has no character 'narrator'"),
    ],
    ids=["unknown language", "a language the model lacks", "clipped reference", "short reference", "unknown character"],
)
def test_bad_input_is_a_clear_message(xtts: Supervisor, changes: Any, expected: str) -> None:
    changes = dict(changes)
    audio = changes.pop("audio", voiced_phrases(16000, 5.0))
    request = job(audio=audio, **{k: v for k, v in changes.items() if k != "character"})
    if "character" in changes:
        request = JobRequest(architecture="xtts", character=changes["character"], text="Hi.", audio=audio, audio_sample_rate=16000)
    with pytest.raises(BadRequestError) as caught:
        xtts.generate(request)
    assert re.search(expected, caught.value.message), caught.value.message
    assert "Traceback" not in caught.value.message


@pytest.mark.slow
@pytest.mark.heavy_env
def test_a_restarted_worker_reuses_the_conditioning_kept_on_disk(tmp_path: Path, xtts_spec: EnvSpec, xtts_python: Path,
                                                                 xtts_models: Path) -> None:
    voice = write_voice(tmp_path / "tenor", voiced_phrases(24000, 4.0) * 0.7, 24000)
    conditioning = tmp_path / "conditioning"
    for attempt, expected in enumerate(["computed", "reused"]):
        for supervisor in supervised(tmp_path / ("run%d" % attempt), xtts_spec, xtts_python, xtts_models, conditioning):
            result = supervisor.generate(job(voice=voice))
            assert result.details["conditioning"] == expected
    assert result.details["conditioning_from"] == "disk"


# --- upstream's calls, in the env, offline -----------------------------------------------------------------------------

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
built, scratch = sys.argv[1], sys.argv[2]
from runtimes.adapter import GenerateRequest, ModelRef
from runtimes.adapters.xtts import MANIFEST, XttsAdapter
from runtimes.errors import BadRequestError
found = {"refused": {}}
def refusal(assets):
    os.environ[ASSETS_ENV] = assets
    try:
        XttsAdapter().load_shared("cpu")
        return "loaded"
    except BadRequestError as exc:
        return exc.message
os.makedirs(os.path.join(scratch, "missing", "xtts_v2"))
found["refused"]["missing"] = refusal(os.path.join(scratch, "missing"))
unsafe = os.path.join(scratch, "unsafe", "xtts_v2")
os.makedirs(unsafe)
for name in ("config.json", "vocab.json"):
    os.symlink(os.path.join(built, "assets", "xtts_v2", name), os.path.join(unsafe, name))
os.symlink(os.path.join(built, "unsafe.pth"), os.path.join(unsafe, "model.pth"))
found["refused"]["unsafe"] = refusal(os.path.join(scratch, "unsafe"))
found["pwned"] = os.path.exists(os.path.join(built, "pwned"))
before = os.stat(os.path.join(built, "assets", "xtts_v2", "model.pth")).st_mtime_ns
os.environ[ASSETS_ENV] = os.path.join(built, "assets")
adapter = XttsAdapter()
adapter.load_shared("cpu")
found["rewritten"] = os.stat(os.path.join(built, "assets", "xtts_v2", "model.pth")).st_mtime_ns != before
from TTS.tts.layers.xtts.gpt import GPT
from TTS.tts.models.xtts import Xtts
calls = {"generate": [], "inference": [], "conditioning": []}
generate = GPT.generate
def observed_generate(self, cond_latents, text_inputs, **kwargs):
    calls["generate"].append({k: v for k, v in kwargs.items() if isinstance(v, (int, float, bool, str))})
    return generate(self, cond_latents, text_inputs, **kwargs)
GPT.generate = observed_generate
inference = Xtts.inference
def observed_inference(self, text, language, *args, **kwargs):
    calls["inference"].append(dict(kwargs, text=text, language=language))
    return inference(self, text, language, *args, **kwargs)
Xtts.inference = observed_inference
conditioning = Xtts.get_conditioning_latents
def observed_conditioning(self, audio_path, **kwargs):
    calls["conditioning"].append(kwargs)
    return conditioning(self, audio_path, **kwargs)
Xtts.get_conditioning_latents = observed_conditioning
character = adapter.load(ModelRef("reference"))
t = np.arange(16000 * 5) / 16000.0
audio = (0.3 * np.sin(2 * np.pi * 150 * t) * ((t % 1.6) < 1.2)).astype(np.float32)
def run(name, text, **options):
    for key in calls:
        del calls[key][:]
    chosen = MANIFEST.resolve_options(dict({"seed": 3}, **options))
    request = GenerateRequest(text=text, audio=audio, audio_sample_rate=16000, options=chosen)
    pieces = list(adapter.stream(character, request))
    found[name] = {"calls": {k: list(v) for k, v in calls.items()}, "samples": sum(p.audio.size for p in pieces),
                   "pieces": len(pieces), "details": request.details}
run("options", "Bonjour. Au revoir.", language="fr", temperature=0.3, top_p=0.5, top_k=7, repetition_penalty=3.5,
    length_penalty=2.0, enable_text_splitting=False, gpt_cond_len=6, max_ref_len=9)
run("speed 1", "Hello there.")
run("speed 2", "Hello there.", speed=2.0)
found["network"] = reached
print(json.dumps(found))
"""


@pytest.mark.slow
@pytest.mark.heavy_env
def test_in_the_env_offline_the_options_reach_upstreams_calls(xtts_python: Path, xtts_built: Path, tmp_path: Path) -> None:
    """With the network gone (no socket connects; no network namespace where ``unshare`` can make one): each option is
    what upstream's Xtts.inference, GPT.generate and get_conditioning_latents receive; speed 2 halves the take (the same
    seed, the same tokens); a missing asset and a model.pth that would run code are refused in words, nothing run, and
    the asset's model.pth is never rewritten."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), HOME=str(home), HF_HUB_OFFLINE="1")
    command = [str(xtts_python), "-c", IN_ENV, str(xtts_built), str(tmp_path / "scratch")]
    isolated = shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    done = subprocess.run((["unshare", "-n"] if isolated else []) + command, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["network"] == []
    assert found["refused"]["missing"].startswith("the XTTS model is missing") and "xtts_v2" in found["refused"]["missing"]
    assert "holds pickled Python objects" in found["refused"]["unsafe"] and not found["pwned"]
    assert not found["rewritten"]
    options = found["options"]
    assert options["pieces"] == 2 and options["details"]["conditioning"] == "computed"
    assert [call["text"] for call in options["calls"]["inference"]] == ["Bonjour.", "Au revoir."]
    for call in options["calls"]["inference"]:
        assert call["language"] == "fr" and call["enable_text_splitting"] is False and call["speed"] == 1.0
    for call in options["calls"]["generate"]:
        sampling = (call["temperature"], call["top_p"], call["top_k"], call["repetition_penalty"], call["length_penalty"])
        assert sampling == (0.3, 0.5, 7, 3.5, 2.0)
        assert call["do_sample"] is True
    assert len(options["calls"]["generate"]) == 2
    [conditioning] = options["calls"]["conditioning"]
    assert (conditioning["gpt_cond_len"], conditioning["gpt_cond_chunk_len"], conditioning["max_ref_length"]) == (6, 4, 9)
    assert found["speed 1"]["details"]["conditioning"] == "computed"  # other lengths of the same recording: another key
    ratio = found["speed 2"]["samples"] / found["speed 1"]["samples"]
    assert 0.45 < ratio < 0.55, ratio
