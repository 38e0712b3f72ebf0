"""Builds tiny random StyleTTS 2 characters and its three auxiliary models with the styletts2 package's own
model classes. Run with the styletts2 env's Python:

    python build_styletts2_character.py OUT_DIR [--real-size]

The decoder's size is fixed by the architecture (its layers are 1024 wide whatever the config says, ~55 M
parameters); everything else is shrunk. With ``--real-size`` the characters have the LibriTTS config's sizes
(for benchmarks). The random duration predictor is biased to ~2 frames (50 ms) a phoneme, so a sentence is
about a second of audio (quick tests; real size: ~3 frames, a spoken pace); the random style encoders get a few training-mode passes before
saving (their spectral norms otherwise start far off, and the style comes out NaN or saturated).

OUT_DIR/assets/styletts2_asr/       config.yml + epoch_00080.pth (ASRCNN, {'model': ...}): upstream Utils/ASR
OUT_DIR/assets/styletts2_jdc/       bst.t7 (JDCNet pitch extractor, {'net': ...}): upstream Utils/JDC
OUT_DIR/assets/styletts2_plbert/    config.yml + step_1000000.t7 (PL-BERT, {'net': {'module.encoder.<key>'}})
OUT_DIR/characters/tiny-multi/      epoch_2nd_40_1c872.pth + config.yml: a multi-speaker model (HiFi-GAN decoder)
                                    whose checkpoint has the name of the established app's 40-epoch model, so
                                    its precomputed styles apply; weights saved with 'module.' prefixes, as
                                    upstream's trainer saves them
OUT_DIR/characters/tiny-single/     model.pth + config.yml: a single-speaker model (iSTFTNet decoder), plain keys,
                                    its config's auxiliary paths as upstream's training config has them
OUT_DIR/unsafe.pth                  a checkpoint whose unpickling would create OUT_DIR/pwned
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Dict

import torch
import yaml
from styletts2 import models
from styletts2.Utils.ASR.models import ASRCNN
from styletts2.Utils.JDC.model import JDCNet
from styletts2.Utils.PLBERT.util import CustomAlbert
from transformers import AlbertConfig
from unsafe_pickle import RunsOnLoad  # a sibling module: these scripts run from their folder

PACKAGE = Path(models.__file__).parent
N_TOKEN = 178  # the package's TextCleaner symbols
TINY_ASR = {"input_dim": 80, "hidden_dim": 32, "n_token": N_TOKEN, "token_embedding_dim": 32}
TINY_PLBERT = {"vocab_size": N_TOKEN, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
               "max_position_embeddings": 512, "num_hidden_layers": 1, "dropout": 0.1}
TINY_DIFFUSION = {"num_layers": 1, "num_heads": 2, "head_features": 16, "multiplier": 1}
ISTFTNET = {"type": "istftnet", "resblock_kernel_sizes": [3, 7, 11], "upsample_rates": [10, 6], "upsample_initial_channel": 512,
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "upsample_kernel_sizes": [20, 12],
            "gen_istft_n_fft": 20, "gen_istft_hop_size": 5}
FRAMES_PER_PHONEME_BIAS = -3.2
"""sigmoid(-3.2) x 50 duration bins ~ 2 frames (a frame is two 12.5 ms mel frames): short takes, quick tests."""
REAL_FRAMES_PER_PHONEME_BIAS = -2.9
"""sigmoid(-2.9) x 50 ~ 3 frames (75 ms): about 13 phonemes a second, as people speak (benchmarks)."""


def upstream_config(name: str) -> Dict[str, Any]:
    return yaml.safe_load((PACKAGE / name).read_text())


def asr(folder: Path, real_size: bool) -> None:
    config = upstream_config("Utils/ASR/config.yml")
    if not real_size:
        config["model_params"] = dict(TINY_ASR)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    torch.save({"model": ASRCNN(**config["model_params"]).state_dict()}, folder / "epoch_00080.pth")


def jdc(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    torch.save({"net": JDCNet(num_class=1, seq_len=192).state_dict()}, folder / "bst.t7")


def plbert(folder: Path, real_size: bool) -> CustomAlbert:
    config = upstream_config("Utils/PLBERT/config.yml")
    if not real_size:
        config["model_params"] = dict(TINY_PLBERT)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    torch.manual_seed(2)
    bert = CustomAlbert(AlbertConfig(**config["model_params"]))
    weights = {"module.encoder." + key: value for key, value in bert.state_dict().items()}
    # upstream's checkpoint has the position ids (newer transformers keep them out of state_dict); its loader deletes them
    weights["module.encoder.embeddings.position_ids"] = torch.arange(config["model_params"]["max_position_embeddings"]).unsqueeze(0)
    torch.save({"net": weights}, folder / "step_1000000.t7")
    return bert


def settle_style_encoder(encoder: torch.nn.Module) -> None:
    """Spectral norm estimates each weight's largest singular value by power iteration, one step per
    training-mode pass: a few passes bring a random encoder's output to a sane size."""
    encoder.train()
    with torch.no_grad():
        for _ in range(8):
            encoder(torch.randn(2, 1, 80, 96))
    encoder.eval()


def character(folder: Path, checkpoint_name: str, assets: Path, multispeaker: bool, decoder: Dict[str, Any], module_prefix: bool,
              real_size: bool, seed: int) -> None:
    config = upstream_config("Configs/config_libritts.yml")
    params = config["model_params"]
    params["multispeaker"] = multispeaker
    params["decoder"] = copy.deepcopy(decoder)
    if not real_size:
        params.update(dim_in=8, n_layer=1)
        params["diffusion"]["transformer"] = dict(TINY_DIFFUSION)
    # what a downloaded character's config says: paths on its trainer's machine, relative to its checkout
    config.update(ASR_config="Utils/ASR/config.yml", ASR_path="Utils/ASR/epoch_00080.pth", F0_path="Utils/JDC/bst.t7",
                  PLBERT_dir="Utils/PLBERT/")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    torch.manual_seed(seed)
    aligner = models.load_ASR_models(str(assets / "styletts2_asr" / "epoch_00080.pth"), str(assets / "styletts2_asr" / "config.yml"))
    pitch = models.load_F0_models(str(assets / "styletts2_jdc" / "bst.t7"))
    bert = CustomAlbert(AlbertConfig(**upstream_config_of(assets / "styletts2_plbert" / "config.yml")["model_params"]))
    from styletts2.utils import recursive_munch

    model = models.build_model(recursive_munch(params), aligner, pitch, bert)
    with torch.no_grad():  # the real-size LSTM's outputs are larger: a smaller weight keeps the bias in charge
        projection = model.predictor.duration_proj.linear_layer
        projection.weight.mul_(0.01 if real_size else 0.05)
        projection.bias.fill_(REAL_FRAMES_PER_PHONEME_BIAS if real_size else FRAMES_PER_PHONEME_BIAS)
    for name in ("style_encoder", "predictor_encoder"):
        settle_style_encoder(model[name])
    saved = ("bert", "bert_encoder", "predictor", "decoder", "text_encoder", "predictor_encoder", "style_encoder", "diffusion")
    prefix = "module." if module_prefix else ""
    net = {name: {prefix + key: value for key, value in model[name].state_dict().items()} for name in saved}
    torch.save({"net": net, "epoch": 0, "iters": 0, "val_loss": 0.0}, folder / checkpoint_name)


def upstream_config_of(path: Path) -> Dict[str, Any]:
    return yaml.safe_load(path.read_text())


def main() -> None:
    out = Path(sys.argv[1])
    real_size = "--real-size" in sys.argv
    assets = out / "assets"
    asr(assets / "styletts2_asr", real_size)
    jdc(assets / "styletts2_jdc")
    plbert(assets / "styletts2_plbert", real_size)
    hifigan = upstream_config("Configs/config_libritts.yml")["model_params"]["decoder"]
    character(out / "characters" / "tiny-multi", "epoch_2nd_40_1c872.pth", assets, True, hifigan,
              module_prefix=True, real_size=real_size, seed=3)
    character(out / "characters" / "tiny-single", "model.pth", assets, False, ISTFTNET, module_prefix=False, real_size=real_size, seed=4)
    torch.save({"net": {}, "epoch": RunsOnLoad(str(out / "pwned"))}, out / "unsafe.pth")
    print("built", out)


if __name__ == "__main__":
    main()
