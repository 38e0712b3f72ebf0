"""StyleTTS 2 through the supervisor, in its own real env (styletts2 0.1.6, CPU torch), with tiny random characters
built by the package's own model classes (tests/builders/build_styletts2_character.py): a multi-speaker one whose
checkpoint has the established app's 40-epoch model's name (so its precomputed styles apply) and a single-speaker
one. Random weights say nothing about prosody: the options are checked where upstream receives them (in the env,
with the network gone), the audio by its rate, length and finiteness.

The decoder has a fixed size (~55 M parameters): a short sentence takes seconds on a busy two-core machine, so
the env's cases are marked slow and keep their texts short."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest

from runtimes.adapter import CharacterInfo
from runtimes.adapters import styletts2_styles
from runtimes.adapters.styletts2 import MANIFEST, TRAITS, StyleTTS2Adapter, split_sentences
from runtimes.environments import EnvSpec
from runtimes.errors import BadRequestError, RemoteError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, JobResult, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT, SupervisorFactory
from tests.contract import adapter_contract, voiced_phrases
from tests.styletts2_fixtures import styletts2_models, styletts2_python, styletts2_spec

__all__ = ["styletts2_models", "styletts2_python", "styletts2_spec"]  # fixtures this module uses by name

RATE = 24000
HAY_SAY = PROJECT_ROOT.parent / "shared" / "reference" / "hay-say-catalogues"
MODEL_40 = "Multi-speaker (40 epochs) (Mane 6, CMC, Princesses, Discord, Gilda, Zecora, Trixie, Starlight, Chrysalis, Tirek, Cozy Glow, " \
           "Flim, Flam, and Shining Armor)"
MODEL_30 = MODEL_40.replace("40 epochs", "30 epochs")
SINGLE = Path("characters") / "tiny-single"
QUICK = {"diffusion_steps": 2}
"""The style diffusion is not what is slow (the decoder is), but two steps are enough where the style is not the subject."""

TestContract = pytest.mark.heavy_env(pytest.mark.slow(adapter_contract("styletts2", "tiny-multi", models="styletts2_models",
                                                                       cancel_options=QUICK)))


def full(options: Dict[str, Any]) -> Dict[str, Any]:
    return MANIFEST.resolve_options(options)


def job(models: Path, text: str = "Hello there.", character: str = "tiny-multi", audio: Optional[np.ndarray] = None,
        audio_rate: int = 44100, **options: Any) -> JobRequest:
    return JobRequest(architecture="styletts2", character=character, character_path=str(models / "characters" / character), text=text,
                      audio=audio, audio_sample_rate=audio_rate if audio is not None else None, options=full(dict(QUICK, **options)))


def streamed(supervisor: Supervisor, request: JobRequest) -> Tuple[JobResult, List[np.ndarray], List[str]]:
    pieces: List[np.ndarray] = []
    messages: List[str] = []
    result = supervisor.generate(request, on_chunk=lambda audio, rate: pieces.append(np.array(audio, copy=True)),
                                 progress=lambda fraction, message: messages.append(message))
    return result, pieces, messages


def log_lines(supervisor: Supervisor) -> List[str]:
    [worker] = supervisor.table.live()
    return list(worker.process.log_tail)


@pytest.fixture(scope="module")
def styletts2(tmp_path_factory: pytest.TempPathFactory, styletts2_spec: EnvSpec, styletts2_python: Path,
              styletts2_models: Path) -> Iterator[Supervisor]:
    """One warm worker for the module (its import and a character's load take seconds); every test leaves it serving."""
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path_factory.mktemp("run"), assets_dir=styletts2_models / "assets",
                                  graceful_stop_s=30.0)
    supervisor = Supervisor(settings, {"styletts2": styletts2_spec}, lambda spec, progress: styletts2_python, memory=SystemRamSource())
    yield supervisor
    supervisor.shutdown()


# --- the manifest, the shipped styles and the folder layout (no env) -------------------------------------------------

def test_the_manifest_declares_what_the_app_and_the_model_manager_read() -> None:
    assert MANIFEST.hay_say_names == ("styletts_2",)
    assert [a.name for a in MANIFEST.assets if a.hay_say_dependency] == ["styletts2_asr", "styletts2_jdc", "styletts2_plbert"]
    assert MANIFEST.reference is not None and not MANIFEST.reference.required and MANIFEST.reference.min_s > 0
    assert not MANIFEST.needs_audio and MANIFEST.needs_text
    assert MANIFEST.length_factor({"speed": 2.0}) == 0.5 and MANIFEST.speed_options(1.5) == {"speed": 1.5}
    assert MANIFEST.detect is not None and MANIFEST.detect.score(["epoch_2nd_00009.pth", "config.yml"]) == 2
    defaults = MANIFEST.resolve_options({})
    assert (defaults["diffusion_steps"], defaults["embedding_scale"], defaults["style_blend"]) == (5, 1.5, 0.5)
    assert defaults["split_sentences"] and defaults["speed"] == 1.0
    assert list(TRAITS) == styletts2_styles.traits()  # the trait choices are every trait the shipped styles have
    assert defaults["style_trait"] == "Neutral 1"


@pytest.mark.skipif(not HAY_SAY.is_dir(), reason="the established app's catalogue data is not beside the project")
def test_the_shipped_styles_are_the_established_apps() -> None:
    source = json.loads((HAY_SAY / "styletts_2.precomputed_styles.json").read_text())
    shipped = {model["name"]: model for model in json.loads(Path(styletts2_styles.DATA_FILE).read_text())["models"]}
    count = 0
    for model in source:
        for character in model["Characters"]:
            for trait in character["Pre-computed Styles"]:
                ours = np.array(styletts2_styles.style(shipped[model["Model"]], character["Character"], trait["Trait"]))
                theirs = np.array(trait["Style Vector"])
                assert ours.shape == (256,) and np.allclose(ours, theirs, rtol=1e-4, atol=1e-6)
                count += 1
    assert count == sum(len(c) for m in shipped.values() for c in m["styles"].values()) == 147
    assert shipped[MODEL_30]["checkpoints"] == ["epoch_2nd_30_e934.pth"]  # its URL's name, not the 23-epoch file's it is saved as


def folder(tmp_path: Path, name: str, files: Dict[str, str]) -> Path:
    path = tmp_path / name
    path.mkdir(parents=True)
    for file_name, text in files.items():
        (path / file_name).write_text(text)
    return path


MULTI_CONFIG = "model_params:\n  multispeaker: true\n  decoder:\n    type: 'hifigan'\n"
SINGLE_CONFIG = "model_params:\n  multispeaker: false\n  decoder:\n    type: istftnet\n"


def test_describe_finds_a_models_precomputed_styles_by_catalogue_name_folder_or_checkpoint(tmp_path: Path) -> None:
    """A catalogue install keeps the entry's name in the model manager's record (the 30-epoch entry saves its checkpoint
    under the 23-epoch file's name, so the name decides); a folder a person made is matched by its checkpoint's name."""
    installed = folder(tmp_path, "cut name", {"epoch_2nd_23_9ab0.pth": "", "config.yml": MULTI_CONFIG,
                                              ".voicegen-model.json": json.dumps({"name": MODEL_30})})
    by_checkpoint = folder(tmp_path, "mine", {"epoch_2nd_40_1c872.pth": "", "config.yml": MULTI_CONFIG})
    only_23 = folder(tmp_path, "other", {"epoch_2nd_23_9ab0.pth": "", "config.yml": MULTI_CONFIG})
    assert styletts2_styles.find(str(installed), "epoch_2nd_23_9ab0.pth")["name"] == MODEL_30  # type: ignore[index]
    assert styletts2_styles.find(str(by_checkpoint), "epoch_2nd_40_1c872.pth")["name"] == MODEL_40  # type: ignore[index]
    info = StyleTTS2Adapter.describe(str(installed))
    assert info.usable and "Twilight Sparkle" in info.speakers and len(info.speakers) == 7
    assert "precomputed styles" in info.extras and "multi-speaker" in info.extras and "style_trait" not in info.unavailable
    assert "style_source=none" in info.unavailable
    assert list(StyleTTS2Adapter.describe(str(only_23)).speakers) == ["Twilight Sparkle"]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"config.yml": SINGLE_CONFIG}, "needs one .pth checkpoint, found 0"),
        ({"a.pth": "", "b.pth": "", "config.yml": SINGLE_CONFIG}, r"found 2 \(a.pth, b.pth\); keep one"),
        ({"model.pth": ""}, "one .yml config beside model.pth, found 0"),
        ({"model.pth": "", "config.yml": "log_dir: x\n"}, "config.yml is not a StyleTTS 2 config"),
    ],
    ids=["no checkpoint", "two checkpoints", "no config", "not its config"],
)
def test_describe_says_what_is_wrong_with_a_folder(tmp_path: Path, files: Dict[str, str], expected: str) -> None:
    info = StyleTTS2Adapter.describe(str(folder(tmp_path, "bad", files)))
    assert not info.usable
    assert re.search(expected, info.problem), info.problem


def test_a_single_speaker_model_without_styles_speaks_with_none(tmp_path: Path) -> None:
    info: CharacterInfo = StyleTTS2Adapter.describe(str(folder(tmp_path, "solo", {"model.pth": "", "config.yml": SINGLE_CONFIG})))
    assert info.usable and not info.speakers and "single-speaker" in info.extras and "istftnet decoder" in info.extras
    assert set(info.unavailable) == {"style_character", "style_trait", "style_source=precomputed style"}


def test_sentences_are_split_where_people_end_them() -> None:
    assert split_sentences('Hello there, Dr. Smith. How are you? I said "fine." Then (he left.) A. B. Lincoln was here!') == [
        "Hello there, Dr. Smith.", "How are you?", 'I said "fine."', "Then (he left.)", "A. B. Lincoln was here!"]
    assert split_sentences("One line\nthe same sentence\n\nA new paragraph") == ["One line\nthe same sentence", "A new paragraph"]
    assert split_sentences("No end mark") == ["No end mark"]


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
models = sys.argv[1]
os.environ[ASSETS_ENV] = os.path.join(models, "assets")
from runtimes.adapter import GenerateRequest, ModelRef
from runtimes.adapters import styletts2_styles
from runtimes.adapters.styletts2 import MANIFEST, StyleTTS2Adapter
adapter = StyleTTS2Adapter()
adapter.load_shared("cpu")
import nltk
import styletts2.tts as tts
from styletts2.Modules.diffusion.sampler import DiffusionSampler
try:
    nltk.data.find("tokenizers/punkt_tab")
    punkt = True
except LookupError:
    punkt = False
asked, calls, sampled = [], [], []
answer = tts.cached_path
tts.cached_path = lambda url: asked.append(url) or answer(url)
segment = tts.StyleTTS2.long_inference_segment
def observed_segment(self, text, prev_s, ref_s, **kwargs):
    calls.append(dict(kwargs, text=text, carried=prev_s is not None, ref=[round(float(v), 4) for v in ref_s.reshape(-1)[:3]]))
    return segment(self, text, prev_s, ref_s, **kwargs)
tts.StyleTTS2.long_inference_segment = observed_segment
forward = DiffusionSampler.forward
def observed_forward(self, noise, num_steps=None, **kwargs):
    sampled.append({"num_steps": num_steps, "embedding_scale": kwargs.get("embedding_scale"), "noise_std": float(noise.std())})
    return forward(self, noise, num_steps=num_steps, **kwargs)
DiffusionSampler.forward = observed_forward
multi = adapter.load(ModelRef("tiny-multi", os.path.join(models, "characters", "tiny-multi")))
single = adapter.load(ModelRef("tiny-single", os.path.join(models, "characters", "tiny-single")))
found = {"network": reached, "punkt": punkt, "asked": asked, "utils_here": os.path.exists("Utils"), "runs": {}}
def run(name, character, text, **options):
    del calls[:], sampled[:]
    request = GenerateRequest(text=text, options=MANIFEST.resolve_options(options))
    pieces = list(adapter.stream(character, request))
    found["runs"][name] = {"calls": list(calls), "sampled": list(sampled), "pieces": [p.audio.size for p in pieces],
                           "rates": sorted({p.sample_rate for p in pieces}),
                           "finite": all(bool(np.isfinite(p.audio).all()) for p in pieces)}
run("options", multi, "Hi there. Bye now.", timbre_blend=0.25, prosody_blend=0.6, noise=2.0, diffusion_steps=3, embedding_scale=0.7,
    style_blend=0.8, style_character="Rarity", style_trait="Tired 1")
run("one piece", multi, "Hi there. Bye now.", split_sentences=False, diffusion_steps=2)
run("none", single, "Hello.", diffusion_steps=2)
run("speed 1", single, "Hello there, how are you.", diffusion_steps=2, noise=0.0)
run("speed 2", single, "Hello there, how are you.", diffusion_steps=2, noise=0.0, speed=2.0)
model = styletts2_styles.find(os.path.join(models, "characters", "tiny-multi"), "epoch_2nd_40_1c872.pth")
found["rarity_tired"] = [round(v, 4) for v in styletts2_styles.style(model, "Rarity", "Tired 1")[:3]]
found["network_after"] = reached
print(json.dumps(found))
"""


@pytest.mark.slow
@pytest.mark.heavy_env
def test_in_the_env_offline_the_options_reach_upstreams_calls(styletts2_python: Path, styletts2_models: Path, tmp_path: Path) -> None:
    """With the network gone (no socket connects; no network namespace where ``unshare`` can make one) and no NLTK
    data: the auxiliary models come from the assets (upstream's URL lookups answered there, its config's Utils/ paths
    replaced), each option is what upstream's long_inference_segment and the diffusion sampler receive (alpha and
    beta are 1 - the blends; the noise scales the sampler's starting noise), the precomputed style is the shipped
    vector, one piece per sentence with the style carried over, and speed 2 halves the take."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), HOME=str(home), HF_HUB_OFFLINE="1", NLTK_DATA=str(tmp_path / "no-nltk-data"))
    command = [str(styletts2_python), "-c", IN_ENV, str(styletts2_models)]
    isolated = shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    done = subprocess.run((["unshare", "-n"] if isolated else []) + command, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["network"] == [] and found["network_after"] == [] and not found["punkt"] and not found["utils_here"]
    assert sorted(set(found["asked"])) == sorted({"https://github.com/yl4579/StyleTTS2/raw/main/Utils/JDC/bst.t7",
                                                  "https://github.com/yl4579/StyleTTS2/raw/main/Utils/PLBERT/config.yml",
                                                  "https://github.com/yl4579/StyleTTS2/raw/main/Utils/PLBERT/step_1000000.t7"})
    runs = found["runs"]
    options = runs["options"]
    assert [c["text"] for c in options["calls"]] == ["Hi there.", "Bye now."] and [c["carried"] for c in options["calls"]] == [False, True]
    for call in options["calls"]:
        assert (call["alpha"], call["t"], call["diffusion_steps"], call["embedding_scale"]) == (0.75, 0.8, 3, 0.7)
        assert call["beta"] == pytest.approx(0.4)
        assert call["ref"] == found["rarity_tired"]
    assert [(s["num_steps"], s["embedding_scale"]) for s in options["sampled"]] == [(3, 0.7), (3, 0.7)]
    assert all(1.4 < s["noise_std"] < 2.6 for s in options["sampled"])  # upstream's unit noise, times 2
    assert len(options["pieces"]) == 2 and options["rates"] == [RATE] and options["finite"]
    assert [c["text"] for c in runs["one piece"]["calls"]] == ["Hi there. Bye now."] and len(runs["one piece"]["pieces"]) == 1
    none = runs["none"]["calls"][0]
    assert (none["alpha"], none["beta"], none["ref"]) == (1.0, 1.0, [0.0, 0.0, 0.0])
    assert runs["speed 1"]["sampled"][0]["noise_std"] == 0.0
    slow, fast = runs["speed 1"]["pieces"][0], runs["speed 2"]["pieces"][0]
    assert abs(fast - slow / 2) < 0.15 * slow, (slow, fast)


@pytest.mark.slow
@pytest.mark.heavy_env
def test_one_piece_per_sentence_streams_and_the_pieces_are_the_take(styletts2: Supervisor, styletts2_models: Path) -> None:
    result, pieces, messages = streamed(styletts2, job(styletts2_models, "Hi. How are you? Fine."))
    assert len(pieces) == 3 and result.sample_rate == RATE
    assert np.array_equal(np.concatenate(pieces), result.audio)
    assert [m for m in messages if m.startswith("spoke sentence")] == ["spoke sentence %d of 3" % n for n in (1, 2, 3)]
    assert np.isfinite(result.audio).all() and float(np.abs(result.audio).max()) > 1e-3
    line = next(line for line in reversed(log_lines(styletts2)) if "long_inference_segment(" in line)
    assert "style: precomputed style Applejack / Neutral 1" in line and "diffusion_steps=2" in line


@pytest.mark.slow
@pytest.mark.heavy_env
def test_duration_grows_with_the_text_and_shrinks_with_speed(styletts2: Supervisor, styletts2_models: Path) -> None:
    short = styletts2.generate(job(styletts2_models, "Hello.", "tiny-single"))
    longer = styletts2.generate(job(styletts2_models, "Hello there, how are you today? I am fine.", "tiny-single"))
    faster = styletts2.generate(job(styletts2_models, "Hello there, how are you today? I am fine.", "tiny-single", speed=2.0))
    assert short.sample_rate == longer.sample_rate == RATE
    assert longer.audio.size > 3 * short.audio.size
    assert faster.audio.size < 0.65 * longer.audio.size


@pytest.mark.slow
@pytest.mark.heavy_env
def test_a_reference_recording_is_the_style_when_given(styletts2: Supervisor, styletts2_models: Path) -> None:
    reference = voiced_phrases(44100, 3.0)
    result = styletts2.generate(job(styletts2_models, "Hello.", audio=reference))
    assert result.sample_rate == RATE and np.isfinite(result.audio).all()
    line = next(line for line in reversed(log_lines(styletts2)) if "long_inference_segment(" in line)
    assert "style: reference recording" in line
    styletts2.generate(job(styletts2_models, "Hello.", "tiny-single", audio=reference, style_source="reference recording"))


@pytest.mark.slow
@pytest.mark.heavy_env
@pytest.mark.parametrize(
    ("audio", "options", "expected"),
    [
        (voiced_phrases(44100, 1.0), {}, "reference recording is 1.0 s; it must be at least 1.5 s"),
        (voiced_phrases(44100, 31.0), {}, "reference recording is 31.0 s; it must be at most 30 s"),
        (np.zeros(3 * 44100, dtype=np.float32), {}, "reference recording is silent"),
        (np.concatenate([np.zeros(2 * 44100, dtype=np.float32), voiced_phrases(44100, 0.6)]), {}, r"has 0\.[5-7] s of voice.*at least 1 s"),
        (None, {"style_source": "reference recording"}, "style source is a reference recording, and none was given"),
        (None, {"style_source": "none"}, "multi-speaker model: it needs a style"),
        (None, {"style_character": "Spike"}, "no precomputed style for the character 'Spike' .*Applejack"),
        (None, {"style_character": "Applejack", "style_trait": "Sad 2"}, "Applejack has no precomputed style 'Sad 2'"),
    ],
    ids=["too short", "too long", "silent", "little voice", "no reference", "no style", "unknown character", "unknown trait"],
)
def test_bad_references_and_styles_are_clear_errors(styletts2: Supervisor, styletts2_models: Path, audio: Optional[np.ndarray],
                                                    options: Dict[str, Any], expected: str) -> None:
    with pytest.raises(BadRequestError, match=expected):
        styletts2.generate(job(styletts2_models, "Hello.", audio=audio, **options))


@pytest.mark.slow
@pytest.mark.heavy_env
def test_styles_a_character_lacks_are_clear_errors(styletts2: Supervisor, styletts2_models: Path, tmp_path: Path) -> None:
    with pytest.raises(BadRequestError, match="tiny-single has no precomputed styles"):
        styletts2.generate(job(styletts2_models, "Hello.", "tiny-single", style_source="precomputed style"))
    unknown = tmp_path / "unknown-multi"  # a multi-speaker model the established app had no styles for
    unknown.mkdir()
    (unknown / "model.pth").symlink_to(styletts2_models / "characters" / "tiny-multi" / "epoch_2nd_40_1c872.pth")
    shutil.copy(styletts2_models / "characters" / "tiny-multi" / "config.yml", unknown)
    request = replace(job(styletts2_models, "Hello."), character="unknown-multi", character_path=str(unknown))
    with pytest.raises(BadRequestError, match="multi-speaker model without precomputed styles: give a reference recording"):
        styletts2.generate(request)
    assert styletts2.generate(replace(request, audio=voiced_phrases(44100, 2.0), audio_sample_rate=44100)).sample_rate == RATE
    styletts2.unload("styletts2", "unknown-multi", str(unknown))


@pytest.mark.slow
@pytest.mark.heavy_env
@pytest.mark.parametrize(
    ("make_folder", "expected"),
    [
        (lambda models, dst: ((dst / "model.pth").write_bytes(b"not a checkpoint"), shutil.copy(models / SINGLE / "config.yml", dst)),
         "model.pth could not be loaded: it is not a readable checkpoint"),
        (lambda models, dst: (shutil.copy(models / "unsafe.pth", dst / "model.pth"), shutil.copy(models / SINGLE / "config.yml", dst)),
         "model.pth holds pickled Python objects.*refused"),
        (lambda models, dst: ((dst / "model.pth").symlink_to(models / "characters/tiny-single/model.pth"),
                              shutil.copy(models / "characters/tiny-multi/config.yml", dst)),
         "model.pth does not match config.yml"),
    ],
    ids=["corrupt checkpoint", "unsafe pickle", "another model's config"],
)
def test_bad_checkpoints_are_clear_errors(styletts2: Supervisor, styletts2_models: Path, tmp_path: Path, make_folder: Any,
                                          expected: str) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    make_folder(styletts2_models, bad)
    with pytest.raises(BadRequestError, match=expected):
        styletts2.generate(replace(job(styletts2_models), character="bad", character_path=str(bad)))
    assert not (styletts2_models / "pwned").exists()
    assert styletts2.status()[0]["state"] == "ready"


@pytest.mark.slow
@pytest.mark.heavy_env
def test_a_missing_asset_is_named(make_supervisor: SupervisorFactory, styletts2_spec: EnvSpec, styletts2_models: Path,
                                  tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    for name in ("styletts2_asr", "styletts2_jdc"):
        shutil.copytree(styletts2_models / "assets" / name, assets / name)
    supervisor = make_supervisor({"styletts2": styletts2_spec}, assets_dir=assets)
    with pytest.raises(RemoteError, match=r"phoneme BERT \(PL-BERT\) is missing.*assets/styletts2_plbert"):
        supervisor.generate(job(styletts2_models))

