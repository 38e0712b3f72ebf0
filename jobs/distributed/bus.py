"""Redis as transport only: job progress and ends (host -> fronts), cancel requests (front -> hosts) over pub/sub, and
each host's heartbeat (its queues, slots and warm models) as a key that expires. Losing any of it loses no job: the
job store holds every state, and the front and hosts fall back to reading it."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import redis

from jobs.distributed.routing import HostView

logger = logging.getLogger(__name__)
PROGRESS_CHANNEL = "voicegen:jobs:progress"
CANCEL_CHANNEL = "voicegen:jobs:cancel"
PIECES_CHANNEL = "voicegen:jobs:pieces"
"""Streamed pieces of takes being made on a host (host -> fronts: the live player and HTTP streams)."""
DOWNLOAD_CHANNEL = "voicegen:downloads"
"""Model downloads on ``download.io`` hosts: their progress (host -> fronts) and cancels (front -> hosts)."""
HOST_KEY = "voicegen:hosts:"


class Bus:
    def __init__(self, url: str, heartbeat_ttl_s: float = 15.0) -> None:
        self.url = url
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self._stop = threading.Event()
        self._listeners: List[threading.Thread] = []

    def _publish(self, channel: str, message: Dict[str, Any]) -> None:
        try:
            self.client.publish(channel, json.dumps(message))
        except redis.RedisError as exc:  # progress is best effort: the store still says how the job ends
            logger.warning("could not publish on %s: %s", channel, exc)

    def progress(self, job_id: str, fraction: Optional[float], message: str) -> None:
        self._publish(PROGRESS_CHANNEL, {"job": job_id, "fraction": fraction, "message": message})

    def ended(self, job_id: str, state: str) -> None:
        self._publish(PROGRESS_CHANNEL, {"job": job_id, "state": state})

    def cancel(self, job_id: str) -> None:
        self._publish(CANCEL_CHANNEL, {"job": job_id})

    def piece(self, message: Dict[str, Any]) -> None:
        self._publish(PIECES_CHANNEL, message)

    def download(self, message: Dict[str, Any]) -> None:
        self._publish(DOWNLOAD_CHANNEL, message)

    def listen(self, channel: str, handle: Callable[[Dict[str, Any]], object], name: str) -> threading.Thread:
        """A thread that hands each message of ``channel`` to ``handle``, resubscribing after Redis goes away."""
        thread = threading.Thread(target=self._listen, args=(channel, handle), name=name, daemon=True)
        thread.start()
        self._listeners.append(thread)
        return thread

    def _listen(self, channel: str, handle: Callable[[Dict[str, Any]], object]) -> None:
        backoff_s = 0.2
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(channel)
                backoff_s = 0.2
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        handle(json.loads(message["data"]))
                    except Exception:  # one bad message must not end the listener
                        logger.exception("a message on %s could not be handled", channel)
            except (redis.RedisError, OSError, ValueError) as exc:  # ValueError: the socket closed under it
                if self._stop.is_set():
                    return
                logger.warning("lost Redis (%s) on %s; retrying in %.1f s", exc, channel, backoff_s)
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (redis.RedisError, OSError):
                        pass

    # heartbeats
    def beat(self, host: HostView, running: int, token: str = "") -> None:
        value = {"name": host.name, "queues": list(host.queues), "slots": host.slots, "loaded": list(host.loaded),
                 "running": running, "at": time.time(), "token": token}
        self.client.set(HOST_KEY + host.name, json.dumps(value), px=int(self.heartbeat_ttl_s * 1000))

    def holder(self, name: str) -> Optional[str]:
        """The process (its claim token) whose live heartbeat carries this host name, if any."""
        raw: Any = self.client.get(HOST_KEY + name)
        if raw is None:
            return None
        try:
            return str(json.loads(raw).get("token") or "")
        except (ValueError, AttributeError):
            return ""

    def forget(self, name: str) -> None:
        try:
            self.client.delete(HOST_KEY + name)
        except redis.RedisError:
            pass

    def hosts(self) -> List[HostView]:
        """The hosts whose heartbeat has not expired."""
        found: List[HostView] = []
        keys = list(self.client.scan_iter(match=HOST_KEY + "*", count=200))
        values: List[Any] = list(self.client.mget(keys)) if keys else []  # type: ignore[arg-type]
        for raw in values:
            if raw is None:
                continue
            try:
                data = json.loads(raw)
                found.append(HostView(str(data["name"]), tuple(data["queues"]), int(data["slots"]), tuple(data.get("loaded") or ()),
                                      int(data.get("running") or 0)))
            except (ValueError, KeyError, TypeError):
                logger.warning("a host heartbeat could not be read: %r", raw[:200])
        return sorted(found, key=lambda host: host.name)

    def close(self) -> None:
        self._stop.set()
        for thread in self._listeners:
            thread.join(3.0)  # each wakes within a second (its read timeout)
        self.client.close()
