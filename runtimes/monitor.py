"""The supervisor's one monitor loop: a thread that calls ``tick`` every interval and outlives any
one failure of it. A tick only decides; blocking work it decides on (unloading a character past its
keep-alive, stopping an idle or dead worker: up to the load timeout, or seconds of a stop's escalation)
is handed off to a thread of its own, so one slow stop never delays noticing another worker's death."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Set

logger = logging.getLogger(__name__)


class Monitor:
    def __init__(self, interval_s: float, tick: Callable[[], None]) -> None:
        self.interval_s = interval_s
        self.tick = tick
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor-monitor", daemon=True)
        self._lock = threading.Lock()
        self._handed_off: Set[threading.Thread] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._closed.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(10.0)

    def hand_off(self, what: str, work: Callable[[], None]) -> None:
        """Run ``work`` beside the loop; a failure is logged with its traceback, like a tick's."""
        thread = threading.Thread(target=self._run, args=(what, work), name="supervisor-%s" % what, daemon=True)
        with self._lock:
            self._handed_off.add(thread)
        thread.start()

    def join_handed_off(self, timeout_s: float) -> None:
        """Wait (bounded) for work handed off earlier: an app shutting down lets started stops finish."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._handed_off)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, what: str, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:  # a thread's boundary: logged, and the loop goes on
            logger.exception("supervisor monitor: %s failed", what)
        finally:
            with self._lock:
                self._handed_off.discard(threading.current_thread())

    def _loop(self) -> None:
        while not self._closed.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # the monitor must outlive any one bad reading
                logger.exception("supervisor monitor failed")
