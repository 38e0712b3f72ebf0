"""Queue names and which host consumes what: configuration, not code.

``generate.gpu.<architecture>``: jobs for a GPU host that serves that architecture; ``generate.cpu``: any host's CPU;
``download.io``: the model manager's downloads (never holding a generation slot); ``host.<name>``: one host's own
queue, where the front sends a job whose model that host already holds (warm placement)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, List, Sequence, Tuple

CPU_QUEUE = "generate.cpu"
DOWNLOAD_QUEUE = "download.io"
GPU_PREFIX = "generate.gpu."
HOST_PREFIX = "host."
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class RoutingError(ValueError):
    """A queue list or host name that cannot work, with what is wrong."""


def gpu_queue(architecture: str) -> str:
    return GPU_PREFIX + architecture


def host_queue(host: str) -> str:
    return HOST_PREFIX + host


def check_host_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise RoutingError("a host name is letters, digits, '.', '_' or '-' (up to 100), not %r" % name)
    return name


def parse_queues(text: str, has_gpu: bool) -> List[str]:
    """A host's queues from ``--queues generate.cpu,generate.gpu.rvc,download.io``; a host without a GPU never takes
    ``generate.gpu.*`` (refused here, naming the queue, rather than failing every job it would take)."""
    queues = [part.strip() for part in text.split(",") if part.strip()]
    if not queues:
        raise RoutingError("a worker host needs at least one queue (e.g. --queues %s,%s)" % (CPU_QUEUE, DOWNLOAD_QUEUE))
    for queue in queues:
        if queue in (CPU_QUEUE, DOWNLOAD_QUEUE):
            continue
        if queue.startswith(GPU_PREFIX) and _NAME.match(queue[len(GPU_PREFIX):]):
            if not has_gpu:
                raise RoutingError("%s is a GPU queue and this host has no GPU that NVML can see: leave it out, or run this "
                                   "worker on a GPU host" % queue)
            continue
        raise RoutingError("unknown queue %r: the queues are %s, %s, and %s<architecture>" % (queue, CPU_QUEUE, DOWNLOAD_QUEUE,
                                                                                             GPU_PREFIX))
    return list(dict.fromkeys(queues))


@dataclass(frozen=True)
class HostView:
    """What the front knows of a live host (from its heartbeat)."""

    name: str
    queues: Tuple[str, ...]
    slots: int
    loaded: Tuple[str, ...] = ()
    """'<architecture>/<character>' of the models its supervisor holds warm."""
    running: int = 0
    """Jobs it ran when it last said so."""

    def serves(self, architecture: str) -> bool:
        return CPU_QUEUE in self.queues or gpu_queue(architecture) in self.queues


def queue_for(architecture: str, hosts: Sequence[HostView]) -> str:
    """Where a job of ``architecture`` goes: a GPU queue for it when a live host consumes one, else the CPU queue."""
    wanted = gpu_queue(architecture)
    return wanted if any(wanted in host.queues for host in hosts) else CPU_QUEUE


def serving(architecture: str, hosts: Iterable[HostView]) -> List[HostView]:
    return [host for host in hosts if host.serves(architecture)]
