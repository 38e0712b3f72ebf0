"""Live takes across hosts: a worker host's runner publishes each streamed piece to its own takes as always, and this
relay sends it over Redis too; the front puts it into its takes under the same job id, where the HTTP stream, the
UI's live player and gradio_client follow it as on one host."""

from __future__ import annotations

import base64
import logging
from typing import Any, Dict

import numpy as np

from app.live import LiveTake, LiveTakes
from jobs.distributed.bus import PIECES_CHANNEL, Bus

logger = logging.getLogger(__name__)


class _RelayedTake(LiveTake):
    def __init__(self, job_id: str, bus: Bus) -> None:
        super().__init__()
        self.job_id, self.bus = job_id, bus

    def start(self, plan: Dict[str, Any]) -> None:
        super().start(plan)
        self.bus.piece({"job": self.job_id, "plan": dict(plan)})

    def publish(self, audio: np.ndarray, sample_rate: int) -> None:
        super().publish(audio, sample_rate)
        if audio.size:
            data = np.ascontiguousarray(audio, dtype="<f4").tobytes()
            self.bus.piece({"job": self.job_id, "rate": int(sample_rate), "shape": list(audio.shape),
                            "audio": base64.b64encode(data).decode("ascii")})


class RelayedTakes(LiveTakes):
    """A worker host's takes: each also goes to the fronts."""

    def __init__(self, bus: Bus) -> None:
        super().__init__()
        self.bus = bus

    def open(self, job_id: str) -> LiveTake:
        with self._lock:
            self._forget_old()
            take = self._takes.get(job_id)
            if take is None:
                take = self._takes[job_id] = _RelayedTake(job_id, self.bus)
            return take


def receive_pieces(bus: Bus, live: LiveTakes) -> None:
    """The front's side: pieces from any host into this front's takes."""
    def handle(message: Dict[str, Any]) -> None:
        take = live.open(str(message["job"]))
        if "plan" in message:
            take.start(dict(message["plan"]))
        else:
            audio = np.frombuffer(base64.b64decode(message["audio"]), dtype="<f4").reshape([int(n) for n in message["shape"]])
            take.publish(audio.astype(np.float32), int(message["rate"]))
    bus.listen(PIECES_CHANNEL, handle, "live-pieces")
