"""Takes being made, piece by piece, for whoever follows them (the HTTP speech route, the UI's live player, a
gradio_client iterating chunks). The runner publishes each post-processed piece under the job's id; followers read
from the first piece on (one that starts following late misses nothing) and learn how the job ended.

Held in memory, by job id, while the job runs and for ``KEEP_ENDED_S`` after (a follower that starts just after the
end still gets the whole take); the job's result is stored as for any job.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np

KEEP_ENDED_S = 60.0


@dataclass(frozen=True)
class Piece:
    audio: np.ndarray
    sample_rate: int


class LiveTake:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.pieces: List[Piece] = []
        self.plan: Dict[str, Any] = {}
        """How post-processing ran on the stream (``pipeline.streaming.StreamPlan.to_dict``)."""
        self.ended_at: Optional[float] = None
        self.outcome: Any = None
        """What the job returned (a ``Generation``), once it ended well."""
        self.error: Optional[BaseException] = None

    def start(self, plan: Dict[str, Any]) -> None:
        with self._changed:
            self.plan = dict(plan)
            self._changed.notify_all()

    def publish(self, audio: np.ndarray, sample_rate: int) -> None:
        if audio.size == 0:
            return
        with self._changed:
            self.pieces.append(Piece(np.asarray(audio, dtype=np.float32), int(sample_rate)))
            self._changed.notify_all()

    def end(self, outcome: Any = None, error: Optional[BaseException] = None) -> None:
        """The job ended (the first word on it counts: the runner's or the job's own watcher's)."""
        with self._changed:
            if self.ended_at is None:
                self.ended_at, self.outcome, self.error = time.monotonic(), outcome, error
                self._changed.notify_all()

    def watch(self, wait: Callable[[], Any], name: str = "live") -> None:
        """End the take however its job ends (``wait`` returns its result or raises its failure), even where its runner
        never ran: cancelled or failed while queued."""

        def run() -> None:
            try:
                self.end(outcome=wait())
            except Exception as exc:  # how the job failed is the take's ending; its followers say it
                self.end(error=exc)

        threading.Thread(target=run, name=name, daemon=True).start()

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def next_pieces(self, start: int, timeout_s: float) -> List[Piece]:
        """The pieces from index ``start`` on, waiting up to ``timeout_s`` for one while the job runs (empty: none yet,
        or the take ended with no more)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.pieces) > start or self.ended_at is not None, timeout=timeout_s)
            return self.pieces[start:]


class LiveTakes:
    def __init__(self, keep_ended_s: float = KEEP_ENDED_S) -> None:
        self.keep_ended_s = keep_ended_s
        self._lock = threading.Lock()
        self._takes: Dict[str, LiveTake] = {}

    def open(self, job_id: str) -> LiveTake:
        """The job's take, made on first use (by its runner or its first follower: whichever comes first)."""
        with self._lock:
            self._forget_old()
            take = self._takes.get(job_id)
            if take is None:
                take = self._takes[job_id] = LiveTake()
            return take

    def get(self, job_id: str) -> Optional[LiveTake]:
        with self._lock:
            return self._takes.get(job_id)

    def _forget_old(self) -> None:
        now = time.monotonic()
        for job_id in [j for j, take in self._takes.items() if take.ended_at is not None and now - take.ended_at > self.keep_ended_s]:
            del self._takes[job_id]
