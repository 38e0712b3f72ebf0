"""The Celery glue: one task, ``voicegen.run_job(job_id)``, configured for long jobs, and the loop a worker host runs.

Long jobs deliberately: ``acks_late`` (a message is acknowledged when its job has ended, so a host that dies holding one
leaves it to be delivered again), prefetch 1 (a host reserves no job it cannot start), a visibility timeout longer than
the longest job (Redis gives an unacknowledged message to another consumer after it), JSON only (no pickles from the
broker). Redelivery is harmless: the host claims the job in the store first (``host.JobHost.run``)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, List, Optional, Sequence, Tuple

from celery import Celery
from celery.signals import worker_shutting_down

from jobs.distributed.bus import CANCEL_CHANNEL, Bus
from jobs.distributed.front import RUN_JOB_TASK, Publish
from jobs.distributed.host import JobHost
from jobs.distributed.routing import DOWNLOAD_QUEUE, HostView, host_queue

logger = logging.getLogger(__name__)


DOWNLOAD_TASK = "voicegen.download"


class _Current:
    host: Optional[JobHost] = None
    """The host this worker process runs jobs for (set before the worker consumes)."""
    download: Optional[Callable[[str], object]] = None
    """Starts a model download on this host (``download.io``): it returns at once, the download runs in the model
    manager's own threads, so it never holds one of the host's slots."""


def make_celery(broker_url: str, visibility_timeout_s: float = 6 * 3600.0) -> Celery:
    app = Celery("voicegen", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True, result_backend=None,
        task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": int(visibility_timeout_s)}, worker_hijack_root_logger=False,
        task_default_queue="generate.cpu", broker_connection_max_retries=None, worker_cancel_long_running_tasks_on_connection_loss=False,
    )

    app.task(name=RUN_JOB_TASK, ignore_result=True, shared=False)(run_job)  # shared=False: one app per test may exist
    app.task(name=DOWNLOAD_TASK, ignore_result=True, shared=False)(run_download)
    return app


def run_download(entry_id: str) -> str:
    """The task: start one catalogue entry's download on this host."""
    start = _Current.download
    if start is None:
        raise RuntimeError("this worker takes no downloads (its queues lack download.io)")
    start(entry_id)
    return "started"


def download_publisher(app: Celery) -> Callable[[str], None]:
    def send(entry_id: str) -> None:
        app.send_task(DOWNLOAD_TASK, args=[entry_id], queue=DOWNLOAD_QUEUE, routing_key=DOWNLOAD_QUEUE)
    return send


def run_job(job_id: str, published_at: Optional[float] = None) -> str:
    """The task: run one delivered job on this process's host (a duplicate or stale delivery is skipped there)."""
    host = _Current.host
    if host is None:
        raise RuntimeError("this worker has no job host set up")
    outcome = host.run(job_id, published_at)
    logger.info("job %s on %s: %s", job_id, host.name, outcome)
    return outcome


def publisher(app: Celery) -> Publish:
    def publish(job_id: str, queue: str, published_at: float) -> None:
        app.send_task(RUN_JOB_TASK, args=[job_id, published_at], queue=queue, routing_key=queue)
    return publish


def heartbeat(bus: Bus, host: JobHost, queues: Sequence[str], slots: int, loaded: Callable[[], Tuple[str, ...]],
              stop: threading.Event) -> threading.Thread:
    """Tell the fronts every third of the heartbeat's lifetime that this host is alive, its slots and its warm models."""
    def beat() -> None:
        while not stop.is_set():
            try:
                bus.beat(HostView(host.name, tuple(queues), slots, loaded()), running=len(host.running()), token=host.token)
            except Exception as exc:  # Redis away: the fronts stop sending here until it is back
                logger.warning("heartbeat failed: %s", exc)
            stop.wait(bus.heartbeat_ttl_s / 3)
    thread = threading.Thread(target=beat, name="host-heartbeat", daemon=True)
    thread.start()
    return thread


def start_host(host: JobHost, bus: Bus, queues: List[str], slots: int,
               loaded: Callable[[], Tuple[str, ...]] = tuple, download: Optional[Callable[[str], object]] = None) -> threading.Event:
    """What a host runs beside its Celery worker: its jobs left by an earlier run taken back, its heartbeat, and the
    cancels the fronts send. Set the returned event to stop the heartbeat."""
    _Current.host, _Current.download = host, download
    wait_for_the_name(bus, host)
    moved = host.recover_own()
    if moved:
        logger.warning("%d job(s) a previous run of host %s left running were taken back", moved, host.name)
    stop = threading.Event()
    heartbeat(bus, host, queues, slots, loaded, stop)
    bus.listen(CANCEL_CHANNEL, lambda message: host.cancel(str(message.get("job") or "")), "host-cancels")
    return stop


def wait_for_the_name(bus: Bus, host: JobHost) -> None:
    """Another live process with this host's name (a copied configuration, a restart while the old one still runs):
    wait for its heartbeat to end, then refuse, naming it; two under one name would take each other's jobs back."""
    deadline = time.monotonic() + 2 * bus.heartbeat_ttl_s
    while True:
        holder = bus.holder(host.name)
        if holder is None or holder == host.token:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("another worker host named %r is running (its heartbeat is live): give this one another name "
                               "(--name / VOICEGEN_HOST_NAME)" % host.name)
        logger.warning("waiting for the other process named %s to go (its heartbeat)", host.name)
        time.sleep(1.0)


def worker_queues(host: JobHost, queues: List[str]) -> List[str]:
    """The queues a host consumes: those configured, and its own (warm placement)."""
    return [*queues, host_queue(host.name)]


def serve(app: Celery, host: JobHost, bus: Bus, queues: List[str], slots: int,
          loaded: Callable[[], Tuple[str, ...]] = tuple, download: Optional[Callable[[str], object]] = None) -> None:
    """Run this host until the worker stops (SIGTERM: a warm shutdown; its running jobs go back to the queue)."""
    stop = start_host(host, bus, queues, slots, loaded, download)

    def shutting_down(**_: object) -> None:
        """SIGTERM (compose down, a rolling update): say goodbye first, hand the running jobs back (they run elsewhere at
        once instead of holding the stop until they end or are killed), then let Celery's warm shutdown finish."""
        stop.set()
        bus.forget(host.name)
        host.hand_back_all()

    worker_shutting_down.connect(shutting_down, weak=False)
    worker = app.Worker(hostname="%s@voicegen" % host.name, queues=worker_queues(host, queues), pool="threads",
                        concurrency=slots, without_gossip=True, without_mingle=True, without_heartbeat=True, loglevel="INFO")
    try:
        worker.start()
    finally:
        stop.set()
        host.hand_back_all()
        bus.forget(host.name)
