"""A worker host (``python3 launcher.py worker``): this machine's supervisor inside a Celery worker, running the jobs a
front (the app started with ``broker_url``) enqueues, from the queues this host is configured to take.

Everything the host needs comes from the same settings as the app: the job store (``jobs_database_url``: a
PostgreSQL every host reaches), the broker (``broker_url``), the shared folder for job files (``shared_dir``), and its
own data folder for environments, characters and caches. A host without a GPU refuses ``generate.gpu.*`` queues at
start, naming the queue."""

from __future__ import annotations

import logging
import socket
from typing import Any, Dict, Tuple

from app.settings import Settings

logger = logging.getLogger(__name__)


def run_worker(settings: Settings) -> int:
    from app.bootstrap import job_store, make_core
    from app.character_sharing import CharacterSharing
    from app.covers import job_models
    from app.live_relay import RelayedTakes
    from app.server import prepare_process_environment
    from jobs.distributed.bus import Bus
    from jobs.distributed.celery_app import make_celery, serve
    from jobs.distributed.host import JobHost
    from jobs.distributed.routing import DOWNLOAD_QUEUE, RoutingError, check_host_name, parse_queues
    from jobs.spec import JobSpec
    from runtimes.memory import make_source

    if not settings.broker_url:
        print("a worker host needs the front's broker: --broker-url redis://HOST:6379/0 (or VOICEGEN_BROKER_URL)", flush=True)
        return 2
    problem = settings.cluster_problem()
    if problem:
        print(problem, flush=True)
        return 2
    try:
        queues = parse_queues(settings.worker_queues, has_gpu=make_source().kind == "nvml")
        name = check_host_name(settings.host_name or socket.gethostname())
    except RoutingError as exc:
        print(str(exc), flush=True)
        return 2
    prepare_process_environment(settings)
    core = make_core(settings)
    bus = Bus(settings.broker_url)
    core.service_runner.runner.live = RelayedTakes(bus)  # streamed pieces go to the fronts too
    sharing = CharacterSharing(core.artifacts, settings.characters_dir, settings.assets_dir)

    def fetch_files(row: Dict[str, Any]) -> None:
        """What this job needs and this host may lack: its characters (``app.covers.job_models``) and their architectures'
        shared assets."""
        for architecture, character in job_models(core.catalog, JobSpec.from_row(row)):
            if sharing.fetch(architecture, character):
                forget_loaded(architecture, character)
            sharing.fetch_assets(core.asset_names(architecture))

    def forget_loaded(architecture: str, character: str) -> None:
        """A newer version replaced this host's copy in the same folder: a warm worker keeps characters by folder, so it
        would answer with the model it loaded before."""
        try:
            folder = core.catalog.character(architecture, character).model_path
            if folder is not None and core.supervisor.unload(architecture, character, folder):
                logger.info("character %s/%s: its earlier version unloaded from its worker", architecture, character)
        except Exception:  # the job then loads what it finds; nothing here may lose it
            logger.warning("could not unload the earlier version of %s/%s", architecture, character, exc_info=True)

    host = JobHost(job_store(settings), core.service_runner, core.artifacts, name, lease_s=settings.job_lease_s, publish=bus,
                   input_copy_max_bytes=settings.history_input_max_mb << 20,
                   fetch_files=fetch_files)

    def loaded() -> Tuple[str, ...]:
        """'<architecture>/<character>' of every model this host's workers hold: the front sends their jobs here."""
        return tuple(sorted({"%s/%s" % (row["architecture"], character) for row in core.supervisor.status()
                             for character in row.get("characters") or ()}))

    download = None
    if DOWNLOAD_QUEUE in queues:  # this host also runs the front's model downloads
        from app.bootstrap import make_model_manager
        from app.remote_downloads import HostDownloads

        download = HostDownloads(make_model_manager(settings, core.specs, core.manifests), bus, sharing, name).start
    print("Worker host %s: queues %s, %d slot(s), job files in %s" % (name, ", ".join(queues), settings.worker_slots,
                                                                     settings.artifacts_dir), flush=True)
    try:
        serve(make_celery(settings.broker_url, visibility_timeout_s=max(6 * 3600.0, settings.job_timeout_s * 2)), host, bus, queues,
              max(1, settings.worker_slots), loaded, download)
    finally:
        core.supervisor.shutdown()
    return 0
