"""Assembling a ``Workstation`` from settings: specs, manifests, env builder, supervisor."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from app.access import ConfigurationError, load_access
from app.actions import Workstation
from app.api_keys import ApiKeyStore
from app.catalog import Catalog
from app.covers import job_models
from app.live import LiveTakes
from app.metrics import Metrics
from app.preferences import Preferences
from app.provenance import Provenance
from app.request_checks import RequestChecks
from app.runner import JobRunner, JobServiceRunner
from app.runtime_controls import RuntimeControls
from app.settings import Settings
from app.tracing import Tracing
from app.voices import VoiceLibrary
from jobs.artifacts import ArtifactStore, LocalFolderStore
from jobs.queue import JobEnd, JobQueue
from jobs.quotas import OwnerQuotas
from jobs.retention import RetentionLoop, RetentionPolicy
from jobs.service import JobService
from jobs.spec import JobSpec
from jobs.store import JobStore, sqlite_url
from models.manager import ModelManager
from pipeline.cache import AudioCache
from pipeline.processing import PresetStore
from runtimes.environments import BuiltEnv, EnvironmentKinds, EnvSpec, KindSettings
from runtimes.manifest import Manifest
from runtimes.memory import make_source
from runtimes.registry import adapter_class, discover, read_manifest
from runtimes.supervisor import Supervisor, SupervisorSettings

logger = logging.getLogger(__name__)


def pick_layer(settings: Settings) -> str:
    if settings.layer:
        return settings.layer
    return "cuda" if make_source().kind == "nvml" else "cpu"


def instance_of(settings: Settings) -> str:
    """Names the data folder in what the app leaves outside it (container labels): a restarted app finds its own."""
    return hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:16]


def make_kinds(settings: Settings) -> EnvironmentKinds:
    """Every environment kind, with where and how it builds (each spec's ``kind`` picks one)."""
    return EnvironmentKinds(KindSettings(
        envs_dir=settings.built_envs_dir, logs_dir=settings.logs_dir, layer=pick_layer(settings),
        conda_executable=settings.conda_executable, container_engine=settings.container_engine,
        container_base_image=settings.container_base_image, container_run_args=settings.container_run_args,
        instance=instance_of(settings),
    ))


def build_env(settings: Settings, architecture: str, progress: Callable[[str], None]) -> BuiltEnv:
    """The launcher's build of the default env, by its kind: a failed update keeps the working env and starts with it."""
    specs = discover(settings.spec_dirs)
    return make_kinds(settings).build(specs[architecture], progress)


@dataclass
class Core:
    """What runs jobs, on the desktop, a server's front, or a worker host: architectures, supervisor, checks, runner."""

    specs: Dict[str, EnvSpec]
    manifests: Dict[str, Manifest]
    supervisor: Supervisor
    cache: AudioCache
    catalog: Catalog
    preferences: Preferences
    artifacts: ArtifactStore
    checks: RequestChecks
    provenance: Provenance
    service_runner: JobServiceRunner

    def asset_names(self, architecture: str) -> List[str]:
        """The shared assets (under the assets folder) this architecture's jobs may need."""
        manifest = self.manifests.get(architecture)
        return [asset.name for asset in manifest.assets] if manifest is not None else []


def make_artifacts(settings: Settings) -> ArtifactStore:
    """A folder (the data folder, or one every host mounts), or an object store through fsspec."""
    if settings.artifacts_url:
        from jobs.artifacts_fsspec import FsspecStore

        return FsspecStore(settings.artifacts_url, settings.artifacts_dir)
    return LocalFolderStore(settings.artifacts_dir)


def make_core(settings: Settings) -> Core:
    specs = discover(settings.spec_dirs)
    manifests: Dict[str, Manifest] = {}
    for name, spec in list(specs.items()):
        try:
            manifests[name] = read_manifest(spec)
        except Exception:  # one architecture's broken adapter (an edited or half-copied envs folder) must not take the app down
            logger.exception("architecture %s is left out: its adapter %s cannot be read", name, spec.adapter)
            del specs[name]
    kinds = make_kinds(settings)
    build_lock = threading.Lock()  # one env build at a time

    def build(spec: EnvSpec, progress: Callable[[Optional[float], str], None]) -> BuiltEnv:
        with build_lock:
            return kinds.build(spec, lambda line: progress(None, line))

    supervisor = Supervisor(
        SupervisorSettings(
            project_root=settings.project_root,
            run_dir=settings.run_dir,
            keep_alive_s=settings.keep_alive_s,
            job_timeout_s=settings.job_timeout_s,
            allow_cpu_fallback=settings.allow_cpu_fallback,
            ram_budget_bytes=settings.ram_budget_mb << 20 if settings.ram_budget_mb else None,
            memory_reserve_bytes=settings.memory_reserve_mb << 20,
            assets_dir=settings.assets_dir,
            conditioning_dir=settings.cache_dir / "conditioning",
            conditioning_architectures=tuple(name for name, manifest in manifests.items() if manifest.zero_shot),
            model_roots=(settings.characters_dir, settings.data_dir / "shared-models"),
        ),
        specs,
        build,
        kinds=kinds,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cache = AudioCache(settings.cache_dir, settings.cache_size_bytes)
    catalog = Catalog(settings, specs, manifests)
    preferences = Preferences(settings.presets_dir, catalog, PresetStore(settings.presets_dir))
    artifacts = make_artifacts(settings)  # keys: outputs/<day>/<file>, jobs/inputs/<job id>.<ext>
    checks = RequestChecks(settings, catalog, preferences, cache, artifacts)
    provenance = Provenance(catalog)
    service_runner = JobServiceRunner(checks, JobRunner(settings, supervisor, cache, provenance, artifacts, LiveTakes()), provenance)
    return Core(specs, manifests, supervisor, cache, catalog, preferences, artifacts, checks, provenance, service_runner)


def make_model_manager(settings: Settings, specs: Dict[str, EnvSpec], manifests: Dict[str, Manifest]) -> ModelManager:
    return ModelManager(
        settings.data_dir,
        {name: adapter_class(spec).describe for name, spec in specs.items()},
        hf_endpoint=settings.hf_endpoint,
        max_parallel_downloads=settings.max_parallel_downloads,
        timeout_s=settings.download_timeout_s,
        allow_private_urls=[part for part in settings.allow_private_urls.split(",") if part.strip()],
        manifests=list(manifests.values()),
    )


def make_workstation(settings: Settings) -> Workstation:
    # first: a configuration that must not serve (a public bind open to anyone) stops before anything starts
    access = load_access(settings.auth, settings.auth_file, settings.admins, settings.share, settings.host,
                         ApiKeyStore(settings.data_dir), settings.insecure_public)
    problem = settings.cluster_problem()
    if problem:
        raise ConfigurationError(problem)
    core = make_core(settings)
    specs, manifests, supervisor, cache, catalog = core.specs, core.manifests, core.supervisor, core.cache, core.catalog
    preferences, checks, service_runner = core.preferences, core.checks, core.service_runner
    jobs, retention = make_jobs(settings, service_runner, core.artifacts, core.asset_names, lambda spec: job_models(catalog, spec))
    models = make_model_manager(settings, specs, manifests)
    metrics = Metrics()
    tracing = Tracing(settings.otlp_endpoint)

    def job_ended(end: JobEnd) -> None:
        metrics.job_ended(end)
        tracing.job_ended(end)

    jobs.on_end = job_ended if settings.telemetry else None
    station = Workstation(settings=settings, catalog=catalog, checks=checks, service_runner=service_runner, preferences=preferences,
                          controls=RuntimeControls(settings, catalog, supervisor, access), jobs=jobs, retention=retention,
                          supervisor=supervisor, cache=cache, models=models, access=access,
                          voices=VoiceLibrary(settings, catalog, checks, access), metrics=metrics)
    metrics.watch(station)
    if settings.broker_url:  # downloads go to download.io hosts; what they install comes back through the shared store
        from app.character_sharing import CharacterSharing
        from app.live_relay import receive_pieces
        from app.remote_downloads import FrontDownloads
        from jobs.distributed.bus import Bus
        from jobs.distributed.celery_app import download_publisher, make_celery

        bus = Bus(settings.broker_url)
        receive_pieces(bus, station.live)  # takes streamed from the hosts, followed here (the bus closes with the downloads')
        station.remote_downloads = FrontDownloads(models, bus, download_publisher(make_celery(settings.broker_url)),
                                                  CharacterSharing(core.artifacts, settings.characters_dir, settings.assets_dir))
    return station


def job_store(settings: Settings) -> JobStore:
    return JobStore(settings.jobs_database_url or sqlite_url(settings.data_dir / "jobs.sqlite3"))


def make_jobs(settings: Settings, runner: JobServiceRunner, artifacts: ArtifactStore,
              asset_names: Callable[[str], List[str]] = lambda architecture: [],
              models_of: Callable[[JobSpec], List[Tuple[str, str]]] = lambda spec: [(spec.architecture, spec.character)],
              ) -> Tuple[JobQueue, RetentionLoop]:
    """The job queue over the job store (SQLite in the data folder, or the configured database), its files in
    ``artifacts`` by key, and its retention (which sweeps only the outputs and kept inputs, never the rest of the store).
    In this process, or, with a broker, the front of worker hosts (``jobs.distributed``)."""
    store = job_store(settings)
    quotas = OwnerQuotas(settings.max_queued_jobs_per_client, settings.max_kept_inputs_mb_per_client << 20)
    jobs: JobQueue
    if settings.broker_url:
        from app.character_sharing import CharacterSharing
        from jobs.distributed.bus import Bus
        from jobs.distributed.celery_app import make_celery, publisher
        from jobs.distributed.front import DistributedJobQueue

        sharing = CharacterSharing(artifacts, settings.characters_dir, settings.assets_dir)

        def publish_files(spec: JobSpec) -> None:
            """What a host needs for this job and may lack: its characters (its own, the voice speaking first, a cover's
            separation model), and the shared assets of their architectures."""
            for architecture, character in models_of(spec):
                sharing.publish(architecture, character)
                sharing.publish_assets(asset_names(architecture))

        jobs = DistributedJobQueue(store, runner, artifacts, Bus(settings.broker_url), publisher(make_celery(settings.broker_url)),
                                   result_of=runner.result_of, inputs_prefix="jobs/inputs",
                                   input_copy_max_bytes=settings.history_input_max_mb << 20, quotas=quotas,
                                   lease_grace_s=settings.job_lease_s,
                                   publish_files=publish_files)
    else:
        jobs = JobService(store, runner, None, settings.max_concurrent_jobs, settings.max_jobs_per_architecture,
                          settings.history_input_max_mb << 20, quotas, artifacts=artifacts, inputs_prefix="jobs/inputs")
    policy = RetentionPolicy(settings.outputs_keep, settings.outputs_max_mb << 20, settings.outputs_max_age_h * 3600,
                             prefixes=("outputs", "jobs/inputs"))
    retention = RetentionLoop(store, policy, every_s=30.0, artifacts=artifacts)
    retention.start()
    return jobs, retention
