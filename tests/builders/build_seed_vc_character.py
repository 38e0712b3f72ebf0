"""Builds tiny random Seed-VC models (the speech and the singing DiT) and their shared parts with the seed-vc
package's own classes, and a saved voice to convert into. Run with the seed_vc env's Python:

    python build_seed_vc_character.py OUT_DIR [--real-size]

With ``--real-size`` (benchmarks) only the speech model's parts are built, at upstream's sizes: the preset's DiT, a
Whisper-small-sized encoder (one decoder layer: upstream drops the decoder), BigVGAN v2 22 kHz's config; all random.

The DiTs follow upstream's preset configs (configs/presets/*.yml) with their widths and depths shrunk (the speech
DiT ~0.67 M parameters); the content encoder is a random 2-layer Whisper encoder (transformers' own class, Whisper's
fixed 1500 positions); the vocoders are small BigVGANs; CAMPPlus and RMVPE have fixed sizes (7 M and 90 M parameters)
and random weights. Nothing here is trained: the tests check shapes, rates, lengths and plumbing.

OUT_DIR/assets/seed_vc_speech/      DiT_seed_v2_uvit_whisper_small_wavenet_bigvgan_pruned.pth + its preset's config
                                    (22050 Hz, 80 mels, wavenet final layer), as upstream's HF repo Plachta/Seed-VC
OUT_DIR/assets/seed_vc_singing/     DiT_seed_v2_uvit_whisper_base_f0_44k_bigvgan_pruned_ft_ema_v2.pth + config
                                    (44100 Hz, 128 mels, f0-conditioned)
OUT_DIR/assets/whisper-small/       a Hugging Face Whisper folder (config, weights, preprocessor_config.json)
OUT_DIR/assets/bigvgan_v2_22khz_80band_256x/, bigvgan_v2_44khz_128band_512x/   config.json + bigvgan_generator.pt
OUT_DIR/assets/campplus_cn_common.bin   CAMPPlus state dict (upstream: funasr/campplus)
OUT_DIR/assets/rmvpe.pt                 RMVPE E2E state dict (upstream: lj1995/VoiceConversionWebUI)
OUT_DIR/characters/alice/           a saved voice: reference.wav (3 s, 16-bit mono 22050 Hz, a voiced tone) + voice.json
OUT_DIR/unsafe.pth                  a checkpoint whose unpickling would create OUT_DIR/pwned
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
import seed_vc
import soundfile
import torch
import yaml
from seed_vc.modules.bigvgan.bigvgan import BigVGAN
from seed_vc.modules.bigvgan.env import AttrDict
from seed_vc.modules.campplus.DTDNN import CAMPPlus
from seed_vc.modules.commons import build_model, recursive_munch
from seed_vc.modules.rmvpe import E2E
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
from unsafe_pickle import RunsOnLoad  # a sibling module: these scripts run from their folder

PRESETS = Path(seed_vc.__file__).parent / "configs" / "presets"
WHISPER_WIDTH = 64
SPEECH = ("seed_vc_speech", "config_dit_mel_seed_uvit_whisper_small_wavenet.yml",
          "DiT_seed_v2_uvit_whisper_small_wavenet_bigvgan_pruned.pth")
SINGING = ("seed_vc_singing", "config_dit_mel_seed_uvit_whisper_base_f0_44k.yml",
           "DiT_seed_v2_uvit_whisper_base_f0_44k_bigvgan_pruned_ft_ema_v2.pth")
BIGVGAN_BASE: Dict[str, Any] = {
    "resblock": "1", "upsample_initial_channel": 32, "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3]],
    "activation": "snakebeta", "snake_logscale": True, "use_tanh_at_final": False, "use_bias_at_final": False,
    "fmin": 0, "fmax": None,
}


def tiny_dit(name: str, config_name: str, checkpoint_name: str, out: Path, real_size: bool = False) -> int:
    config = yaml.safe_load((PRESETS / config_name).read_text())
    params = config["model_params"]
    if not real_size:
        params["DiT"].update(hidden_dim=64, num_heads=2, depth=2, content_dim=64)
        params["wavenet"].update(hidden_dim=64, num_layers=2)
        params["length_regulator"].update(channels=64, in_channels=WHISPER_WIDTH)
    model = build_model(recursive_munch(params), stage="DiT")
    torch.manual_seed(1)
    folder = out / "assets" / name
    folder.mkdir(parents=True)
    (folder / config_name).write_text(yaml.safe_dump(config))
    torch.save({"net": {key: model[key].state_dict() for key in model}}, folder / checkpoint_name)
    return sum(p.numel() for key in model for p in model[key].parameters())


def whisper(out: Path, real_size: bool = False) -> None:
    width, layers, heads, ffn = (768, 12, 12, 3072) if real_size else (WHISPER_WIDTH, 2, 2, 128)  # whisper-small's encoder
    config = WhisperConfig(vocab_size=64, d_model=width, encoder_layers=layers, encoder_attention_heads=heads, decoder_layers=1,
                           decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, num_mel_bins=80,
                           max_source_positions=1500, max_target_positions=16, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                           decoder_start_token_id=1)
    folder = out / "assets" / "whisper-small"
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)


def bigvgan(name: str, rate: int, mels: int, upsample: list, n_fft: int, out: Path) -> None:
    hop = int(np.prod(upsample))
    h = dict(BIGVGAN_BASE, num_mels=mels, sampling_rate=rate, hop_size=hop, n_fft=n_fft, win_size=n_fft,
             upsample_rates=upsample, upsample_kernel_sizes=[2 * u for u in upsample])
    model = BigVGAN(AttrDict(h))
    folder = out / "assets" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(h, indent=1))
    torch.save({"generator": model.state_dict()}, folder / "bigvgan_generator.pt")


def voice(out: Path) -> None:
    rate = 22050
    t = np.arange(3 * rate) / rate
    pitch_hz = 180.0 + 20.0 * np.sin(2 * np.pi * 3.0 * t)  # a voiced, gliding tone: RMVPE and CAMPPlus get real input shapes
    phase = 2 * np.pi * np.cumsum(pitch_hz) / rate
    audio = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2 * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t) ** 2)
    folder = out / "characters" / "alice"
    folder.mkdir(parents=True)
    soundfile.write(folder / "reference.wav", audio.astype(np.float32), rate, subtype="PCM_16")
    (folder / "voice.json").write_text(json.dumps({"name": "Alice", "transcript": "", "made_by": "tests", "source": "synthetic tone",
                                                   "created_at": "2026-12-05T00:00:00Z"}))


REAL_BIGVGAN_22K: Dict[str, Any] = {
    "resblock": "1", "num_mels": 80, "upsample_rates": [4, 4, 2, 2, 2, 2], "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4],
    "upsample_initial_channel": 1536, "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
    "use_tanh_at_final": False, "use_bias_at_final": False, "activation": "snakebeta", "snake_logscale": True,
    "sampling_rate": 22050, "n_fft": 1024, "hop_size": 256, "win_size": 1024, "fmin": 0, "fmax": None,
}
"""nvidia/bigvgan_v2_22khz_80band_256x's config.json (112 M parameters)."""


def real_size(out: Path) -> None:
    torch.manual_seed(0)
    parameters = tiny_dit(*SPEECH, out, real_size=True)
    whisper(out, real_size=True)
    folder = out / "assets" / "bigvgan_v2_22khz_80band_256x"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(REAL_BIGVGAN_22K, indent=1))
    torch.save({"generator": BigVGAN(AttrDict(REAL_BIGVGAN_22K)).state_dict()}, folder / "bigvgan_generator.pt")
    torch.save(CAMPPlus(feat_dim=80, embedding_size=192).state_dict(), out / "assets" / "campplus_cn_common.bin")
    voice(out)
    print("real-size speech DiT %d parameters" % parameters)


def main(out: Path) -> None:
    torch.manual_seed(0)
    speech_params = tiny_dit(*SPEECH, out)
    singing_params = tiny_dit(*SINGING, out)
    whisper(out)
    bigvgan("bigvgan_v2_22khz_80band_256x", 22050, 80, [8, 8, 4], 1024, out)
    bigvgan("bigvgan_v2_44khz_128band_512x", 44100, 128, [8, 8, 8], 2048, out)
    torch.save(CAMPPlus(feat_dim=80, embedding_size=192).state_dict(), out / "assets" / "campplus_cn_common.bin")
    torch.save(E2E(4, 1, (2, 2)).half().state_dict(), out / "assets" / "rmvpe.pt")  # half: 173 MB, not 346 (RMVPE loads it as float)
    voice(out)
    torch.save({"net": {"cfm": {"bad": RunsOnLoad(str(out / "pwned"))}}}, out / "unsafe.pth")
    print("speech DiT %d parameters, singing DiT %d" % (speech_params, singing_params))


if __name__ == "__main__":
    if "--real-size" in sys.argv[2:]:
        real_size(Path(sys.argv[1]))
    else:
        main(Path(sys.argv[1]))
