"""Which waiting job starts next: a pure function of the queue, what runs, and when each client last started.

Among the jobs that may start (a free slot in their architecture's lane), the client with the fewest running
jobs goes first, then the one that started least recently, then the oldest job. A client is a stable identity
(a login, an API key, a browser, else the address), so asking in many requests earns no extra turns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Protocol, Sequence, TypeVar


class Queued(Protocol):
    @property
    def client(self) -> str: ...

    @property
    def architecture(self) -> str: ...

    @property
    def created_at(self) -> float: ...


@dataclass(frozen=True)
class Waiting:
    job_id: str
    client: str
    architecture: str
    created_at: float


Q = TypeVar("Q", bound=Queued)


def pick_next(queue: Sequence[Q], running_per_client: Mapping[str, int], last_start: Mapping[str, float],
              has_room: Callable[[str], bool]) -> Optional[Q]:
    startable = [job for job in queue if has_room(job.architecture)]
    if not startable:
        return None
    return min(startable, key=lambda job: (running_per_client.get(job.client, 0), last_start.get(job.client, -math.inf),
                                           job.created_at))


def bounded(last_start: dict[str, float], limit: int, active_clients: set[str]) -> None:
    """Forget the longest-idle clients once ``last_start`` holds more than ``limit`` (clients with jobs in line
    are forgotten last): a client that comes back after that is treated as new, which is fair enough."""
    if len(last_start) <= limit:
        return
    target = max(1, limit * 3 // 4)  # trim in steps: not a sort on every start
    for client in sorted(last_start, key=lambda c: (c in active_clients, last_start[c])):
        if len(last_start) <= target:
            return
        del last_start[client]
