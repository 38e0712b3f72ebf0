"""The supervisor's one monitor loop: a thread that calls ``tick`` every interval and outlives any
one failure of it."""

from __future__ import annotations

import logging
import threading
from typing import Callable

logger = logging.getLogger(__name__)


class Monitor:
    def __init__(self, interval_s: float, tick: Callable[[], None]) -> None:
        self.interval_s = interval_s
        self.tick = tick
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._closed.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(10.0)

    def _loop(self) -> None:
        while not self._closed.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # the monitor must outlive any one bad reading
                logger.exception("supervisor monitor failed")
