"""The app's settings: built once at start (defaults < ``<data_dir>/config.toml`` < ``VOICEGEN_*`` environment <
flags), validated and frozen by pydantic-settings (a wrong value is refused with the setting's name)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Dict, Literal, Mapping, Optional, Tuple

from pydantic import field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "VOICEGEN_"
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"


class Settings(BaseSettings):
    """Built directly (``Settings(data_dir=...)``) it takes only what it is given; ``build_settings`` layers the
    config file and the environment under the flags."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    project_root: Path = PROJECT_ROOT
    data_dir: Path = DEFAULT_DATA_DIR
    envs_dir: Optional[Path] = None
    """Where built environments live; default ``<data_dir>/envs``."""
    extra_spec_dirs: Annotated[Tuple[Path, ...], NoDecode] = ()
    """More folders of architecture specs beside ``envs/`` (tests add a fault-injecting one)."""
    container_engine: str = "docker"
    """The engine an architecture whose spec says ``kind = "container"`` runs in: ``docker`` or ``podman`` (or a path)."""
    container_base_image: str = ""
    """The base image container environments build ``FROM`` (default ``python:<version>-slim``; a local image offline)."""
    container_run_args: str = ""
    """More arguments for every container worker's ``run`` (e.g. ``--ulimit nofile=20000:20000`` where podman cannot raise limits)."""
    conda_executable: str = ""
    """The tool a ``kind = "conda"`` environment is made with (a path or name); default: micromamba, mamba or conda on PATH."""
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: Optional[str] = None
    """user:password (comma-separated for several); prefer ``VOICEGEN_AUTH`` or ``auth_file`` (not in the process list)."""
    auth_file: Optional[Path] = None
    """A file of user:password lines."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line (a job's id, state and trace id as fields) for a server's log pipeline."""
    telemetry: bool = True
    """Count jobs for /metrics and write their traces (off: neither; for measuring what they cost)."""
    otlp_endpoint: str = ""
    """Where OpenTelemetry traces of jobs go (OTLP over HTTP, e.g. ``http://collector:4318``); "" keeps them in the process."""
    announcement: str = ""
    """A banner (Markdown) every visitor sees at the top of the page: an operator's word on a shared server."""
    voice_cloning: Literal["on", "operators", "off"] = "on"
    """Zero-shot voices (speaking or converting in the voice of a recording someone gives): ``on`` for everyone,
    ``operators`` only for the admins of a shared server, ``off`` for nobody (the architectures stay listed, refusing)."""
    insecure_public: bool = False
    """Serve beyond this machine with neither logins nor API keys (refused otherwise)."""
    admins: str = ""
    """Comma-separated users who get the runtime controls and model management when the app is shared or has logins."""
    open_browser: bool = True
    default_architecture: str = "piper"
    default_output_format: str = "wav"
    keep_alive_s: float = 300.0
    prewarm: str = "default"
    """Workers to start with the app: "default" (the default architecture's first character), "" (none),
    or a comma-separated list of architecture:character (e.g. "piper:joe,piper:amy")."""
    pinned: str = ""
    """architecture:character pairs (comma-separated) that are never unloaded."""
    allow_cpu_fallback: bool = False
    """Run a model on the CPU when it cannot fit on the GPU, instead of waiting for memory."""
    ram_budget_mb: Optional[int] = None
    """Treat the machine as having this much memory for workers (system-RAM policy)."""
    memory_reserve_mb: int = 512
    job_timeout_s: float = 600.0
    max_text_chars: int = 5000
    max_output_s: float = 900.0
    """Longest result served (after speed changes); longer requests are refused before or right after generating."""
    max_input_s: float = 900.0
    """Longest recording taken (read from the file's header, before decoding it)."""
    max_input_channels: int = 8
    max_upload_mb: int = 200
    max_output_rate_hz: int = 192000
    max_concurrent_jobs: int = 4
    """Jobs generating at once, the Gradio queue and the HTTP route together."""
    max_jobs_per_architecture: int = 2
    """Of those, at most this many of one architecture: a slow conversion never takes every slot from Piper."""
    jobs_database_url: Optional[str] = None
    """The job store (history): default SQLite at ``<data_dir>/jobs.sqlite3``; a SQLAlchemy URL (Postgres) in server mode."""
    broker_url: Optional[str] = None
    """Beyond one host: the Redis URL (``redis://host:6379/0``) the front and its worker hosts share. With it this app
    enqueues jobs and worker hosts (``launcher.py worker``) run them; ``jobs_database_url`` should then name a PostgreSQL
    every host reaches, and ``shared_dir`` a folder every host mounts."""
    shared_dir: Optional[Path] = None
    """Where job files (outputs, kept input recordings) live when several hosts share them: the same folder, at this
    path, on every host. Default: the data folder."""
    artifacts_url: Optional[str] = None
    """Job files in an object store instead of a folder, for hosts that share none: an fsspec URL such as
    ``s3://bucket/voicegen`` (credentials and a non-AWS endpoint from ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_ENDPOINT_URL``). Each host reads through its own cache folder (``<data_dir>/artifact-cache``)."""
    host_name: str = ""
    """This worker host's name in the job store and the Runtimes view (default: the machine's name)."""
    worker_queues: str = "generate.cpu"
    """The queues this worker host consumes (``generate.cpu``, ``generate.gpu.<architecture>``, ``download.io``)."""
    worker_slots: int = 1
    """Jobs this worker host runs at once."""
    job_lease_s: float = 30.0
    """A running job's lease: a host that stops renewing it for this long is taken to be gone and its job runs again."""
    history_input_max_mb: int = 50
    """Input recordings up to this size are kept with their job (for Retry, re-generate and restarts)."""
    model_aliases: str = "tts-1=piper,tts-1-hd=piper,gpt-4o-mini-tts=piper"
    """OpenAI model names clients hard-code, mapped to architectures (``/v1/audio/speech``, listed by ``/v1/models``)."""
    voice_aliases: str = ""
    """OpenAI voice names mapped to characters, e.g. ``alloy=joe,echo=piper:amy``; an OpenAI voice not named here
    speaks with the architecture's first character."""
    outputs_keep: int = 500
    """Ended jobs kept per owner (newest first, with their files), also bounded by ``outputs_max_mb`` per owner and
    ``outputs_max_age_h``; files no job names are swept after an hour."""
    outputs_max_mb: int = 2000
    stems_max_mb: int = 4000
    """Separated stems of songs kept for covers (another character on the same song reuses them), oldest songs out first."""
    outputs_max_age_h: float = 72.0
    history_size: int = 10
    max_queued_jobs_per_client: int = 100
    """Jobs one client (a login, a browser, else an address) may have waiting at once (0: no limit)."""
    max_kept_inputs_mb_per_client: int = 2000
    """Megabytes of input recordings kept for one client's jobs (0: no limit); History's Delete frees them."""
    max_batch_items: int = 100
    """Lines or recordings one batch call may hold."""
    trusted_hosts: str = ""
    """Host names (comma-separated) the app answers to besides loopback names and IP addresses, e.g. the name a
    proxy serves it under; any other Host header is refused (DNS rebinding)."""
    failed_login_limit: int = 10
    """Failed logins (HTTP Basic, Bearer, Gradio's form) from one address within ``failed_login_window_s`` before
    that address is refused for the rest of the window."""
    rate_limit_per_min: float = 120.0
    """Requests per minute on the HTTP routes per caller (login or API key) and per client address (0: no limit)."""
    rate_limit_burst: int = 30
    """Requests above the rate a caller may make at once."""
    failed_login_window_s: float = 300.0
    cache_size_bytes: int = 2 << 30
    """Disk cache of processed audio and outputs; least recently used entries go first."""
    hf_endpoint: Optional[str] = None
    """The Hugging Face hub the model manager downloads from (default: huggingface.co; a mirror or a test hub)."""
    max_parallel_downloads: int = 3
    download_timeout_s: float = 30.0
    allow_private_urls: str = ""
    """Networks (comma-separated, e.g. ``10.0.5.0/24,127.0.0.1``) the model manager may fetch from though not public: a
    private mirror. By default catalogue and model URLs reaching loopback, link-local or private addresses are refused."""
    layer: Optional[str] = None
    """Requirement layer for envs (cpu/cuda); default: cuda when an NVIDIA GPU is present."""

    @property
    def built_envs_dir(self) -> Path:
        return self.envs_dir or self.data_dir / "envs"

    @property
    def spec_dirs(self) -> Tuple[Path, ...]:
        return (self.project_root / "envs", *self.extra_spec_dirs)

    @property
    def outputs_dir(self) -> Path:
        return self.artifacts_dir / "outputs"

    def cluster_problem(self) -> Optional[str]:
        """With a broker, what keeps a front and its hosts from seeing the same jobs and files; None when nothing does."""
        if not self.broker_url:
            return None
        if not self.jobs_database_url:
            return ("with a broker, the front and every worker host need one job store: set --database-url / "
                    "VOICEGEN_JOBS_DATABASE_URL to a PostgreSQL every host reaches (postgresql+psycopg://USER:PASSWORD@HOST/DB); "
                    "each would otherwise keep its own SQLite file and never see the others' jobs")
        if not (self.shared_dir or self.artifacts_url):
            return ("with a broker, job files must be where every host reads them: set --shared-dir / VOICEGEN_SHARED_DIR (a "
                    "folder every host mounts at the same path) or VOICEGEN_ARTIFACTS_URL (s3://bucket/prefix)")
        return None

    @property
    def artifacts_dir(self) -> Path:
        """The artifact store's folder: job files by key (outputs/..., jobs/inputs/...); with ``artifacts_url``, this
        host's cache of the object store's files (what it reads and serves)."""
        if self.artifacts_url:
            return self.data_dir / "artifact-cache"
        return self.shared_dir or self.data_dir

    @property
    def assets_dir(self) -> Path:
        """Shared pretrained assets every character of an architecture uses (content encoders, ...)."""
        return self.data_dir / "assets"

    @property
    def characters_dir(self) -> Path:
        return self.data_dir / "characters"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def presets_dir(self) -> Path:
        return self.data_dir / "presets"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def temp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def url(self) -> str:
        """Where the app answers (printed at start, and what a second launch on the data folder points at)."""
        return "http://%s:%d/" % (self.host, self.port)

    @field_validator("data_dir", "envs_dir", "auth_file", "project_root", mode="after")
    @classmethod
    def _absolute(cls, value: Optional[Path]) -> Optional[Path]:
        return value.expanduser().resolve() if value is not None else None

    @field_validator("extra_spec_dirs", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        """``a:b`` (the OS's path separator) from the environment or a config file, or a list."""
        if isinstance(value, str):
            return tuple(Path(part).expanduser().resolve() for part in value.split(os.pathsep) if part)
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> Tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # built directly: only what it is given (tests and benchmarks build their own)


class _Environment(EnvSettingsSource):
    """``VOICEGEN_*`` from a given mapping (the process's environment, or a test's)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self.environ = environ
        super().__init__(settings_cls, env_prefix=ENV_PREFIX, case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, Optional[str]]:
        return parse_env_vars(self.environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def build_settings(environ: Mapping[str, str], flags: Dict[str, Any]) -> Settings:
    """defaults < ``<data_dir>/config.toml`` < ``VOICEGEN_*`` environment variables < flags. Raises pydantic's
    ``ValidationError`` naming the setting for a value that does not fit."""
    given = {key: value for key, value in flags.items() if value is not None}
    data_dir = Path(given.get("data_dir") or environ.get(ENV_PREFIX + "DATA_DIR") or DEFAULT_DATA_DIR).expanduser()

    class Layered(Settings):
        model_config = SettingsConfigDict(toml_file=data_dir / "config.toml")

        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                       env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                       file_secret_settings: PydanticBaseSettingsSource) -> Tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, _Environment(settings_cls, environ), TomlConfigSettingsSource(settings_cls))

    layered = Layered(**given)
    return Settings(**{name: getattr(layered, name) for name in Settings.model_fields})
