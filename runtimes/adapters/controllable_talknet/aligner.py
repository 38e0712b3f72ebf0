"""Per-token durations from a reference recording, as the established app (SortAnon/ControllableTalkNet) gets them:
NVIDIA's TalkNet aligner, a CTC speech recogniser over TalkNet's own ARPAbet vocabulary (NeMo's
``EncDecCTCModel``, ``asr_talknet_aligner``, a QuartzNet 5x5 trained on LibriTTS phonemes), gives log-probabilities
of every token per frame of the recording; the text's tokens, with a blank before, between and after them (the
layout TalkNet's blank-interleaved models read), are forced through those frames along the most probable path (a
Viterbi pass over CTC's states: stay, step to the next, or skip a blank between two different tokens), and each
state's frame count is its duration. The durations sum to the recording's frames, so the take's words fall where
the recording's do, pauses included.

Only numpy at import; the model is built by the adapter (``TalkNetAdapter._nemo``, weights-only) from the shared
asset ``assets/asr_talknet_aligner.nemo`` (its name and source live in adapter.py, which imports this module only
when it aligns).
"""

from __future__ import annotations

import itertools
from typing import Any, List, Sequence

import numpy as np

from runtimes.adapters.controllable_talknet.adapter import ALIGNER_ASSET, ALIGNER_SOURCE, ALIGNER_URL
from runtimes.errors import BadRequestError

__all__ = ["ALIGNER_ASSET", "ALIGNER_SOURCE", "ALIGNER_URL", "Aligner", "ctc_durations", "fold_blanks", "interleaved"]

UNREACHABLE = -1e30
STAY, STEP, SKIP = 0, 1, 2


def interleaved(tokens: Sequence[int], blank: int) -> List[int]:
    """``[blank, t1, blank, t2, ..., tn, blank]``: CTC's states, and TalkNet's blank-interleaved token layout."""
    states = [blank]
    for token in tokens:
        states += [int(token), blank]
    return states


def ctc_durations(log_probs: np.ndarray, tokens: Sequence[int], blank: int) -> np.ndarray:
    """Frames per state of ``interleaved(tokens, blank)`` along the most probable CTC path through ``log_probs``
    (frames x classes). Every token gets at least one frame; the blanks may get none. Ties go to staying in a state,
    then to the nearer predecessor (as upstream's extractor breaks them)."""
    scores = np.asarray(log_probs, dtype=np.float64)
    states = np.asarray(interleaved(tokens, blank), dtype=np.int64)
    frames, count = scores.shape[0], states.size
    repeats = sum(1 for a, b in itertools.pairwise(tokens) if a == b)
    if frames < len(tokens) + repeats:
        raise BadRequestError("the reference recording is too short for the text: its %d frames cannot hold %d sounds "
                              "(say less, or give a longer recording)" % (frames, len(tokens) + repeats))
    can_skip = np.zeros(count, dtype=bool)
    can_skip[2:] = (states[2:] != blank) & (states[2:] != states[:-2])
    best = np.full(count, UNREACHABLE)
    best[: min(2, count)] = scores[0, states[: min(2, count)]]
    came_from = np.zeros((frames, count), dtype=np.int8)
    every = np.arange(count)
    for t in range(1, frames):
        step = np.concatenate([[UNREACHABLE], best[:-1]])
        skip = np.where(can_skip, np.concatenate([[UNREACHABLE, UNREACHABLE], best[:-2]]), UNREACHABLE)
        options = np.stack([best, step, skip])
        choice = np.argmax(options, axis=0)  # the first of equal scores: stay, then step
        best = options[choice, every] + scores[t, states]
        came_from[t] = choice
    state = count - 1 if count == 1 or best[-1] >= best[-2] else count - 2
    durations = np.zeros(count, dtype=np.int64)
    for t in range(frames - 1, -1, -1):
        durations[state] += 1
        state -= int(came_from[t, state])
    return durations


def fold_blanks(durations: np.ndarray) -> np.ndarray:
    """Durations of ``[blank, t1, blank, ..., tn, blank]`` for a model trained without blanks: each blank's frames go
    to the token after it, the last blank's to the last token."""
    tokens = np.array(durations[1::2], dtype=np.int64)
    tokens += np.asarray(durations[0:-1:2], dtype=np.int64)
    tokens[-1] += int(durations[-1])
    return tokens


class Aligner:
    """The aligner model (an ``EncDecCTCModel``) and what the alignment reads from it."""

    def __init__(self, model: Any, device: str) -> None:
        import torch

        self.torch, self.model, self.device = torch, model, device
        decoder = model.decoder
        self.labels = [str(label) for label in (decoder.vocabulary or [])]
        self.blank = int(decoder.num_classes_with_blank) - 1
        self.rate_hz = int(model.cfg.preprocessor.get("sample_rate", model.cfg.get("sample_rate", 16000)))

    def vocabulary_problem(self, labels: Sequence[str], blank: int) -> str:
        """Why a TalkNet whose vocabulary is ``labels`` (its blank at ``blank``) cannot be aligned with this model;
        empty when it can: the aligner's labels are the TalkNet's first ones, at the same ids (upstream hands the
        same ids to both). The blanks may differ: the alignment uses the aligner's, the TalkNet its own."""
        if not self.labels or list(labels)[: len(self.labels)] != self.labels:
            shown = "ARPAbet phonemes" if "AA" in self.labels else "%d labels" % len(self.labels)
            return ("its vocabulary (%d labels, blank %d) is not the aligner's (%s, blank %d): only a phoneme TalkNet, as the "
                    "established app's are, can be aligned" % (len(labels), blank, shown, self.blank))
        return ""

    def unknown(self, ids: Sequence[int]) -> List[int]:
        """The ids among ``ids`` the aligner has no class for (beyond its vocabulary: e.g. the TalkNet's own blank)."""
        return sorted({int(i) for i in ids if not 0 <= int(i) < len(self.labels)})

    def log_probs(self, audio: np.ndarray) -> np.ndarray:
        """Log-probabilities per frame (frames x classes) of ``audio`` (mono floats at ``rate_hz``)."""
        torch = self.torch
        signal = torch.from_numpy(np.asarray(audio, dtype=np.float32)).unsqueeze(0).to(self.device)
        length = torch.tensor([signal.shape[-1]], dtype=torch.long, device=self.device)
        with torch.no_grad():
            log_probs, _, _ = self.model(input_signal=signal, input_signal_length=length)
        return np.asarray(log_probs[0].float().cpu().numpy(), dtype=np.float64)
