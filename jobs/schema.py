"""The job table (SQLAlchemy Core: the ORM's import is not worth its start-up time here). Times are epoch
seconds (floats): cheap to write, sort and compare in any database. Its history is in ``migrations/``."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Integer, MetaData, String, Table, Text, false

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = "queued", "running", "succeeded", "failed", "cancelled", "interrupted"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
ACTIVE_STATES = (QUEUED, RUNNING)
ENDED_STATES = (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
SCHEMA_REVISION = "0004"
"""The newest migration's revision: a database already there opens without loading Alembic (a test checks it)."""

metadata = MetaData()
JOBS = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(200), nullable=False, index=True),
    # whose history it is: a user (with logins), a browser, or a gradio_client session
    Column("session", String(200), nullable=False),
    Column("client", String(200), nullable=True, index=True),
    # who asked, as a stable identity (a login, an API key, a browser, else the address): quotas and the fair pick
    # what a Cancel of "my jobs" reaches: one browser tab, one client, one HTTP request
    Column("batch_id", String(32), nullable=True, index=True),
    Column("state", String(16), nullable=False, index=True),
    Column("architecture", String(64), nullable=False),
    Column("character", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("input_name", String(300), nullable=True),
    Column("input_sha256", String(64), nullable=True),
    Column("input_path", Text, nullable=True, index=True),
    Column("input_bytes", Integer, nullable=False, server_default="0"),
    # a copy of the input recording (within a size limit): a queued job survives a restart and can be made again
    Column("request", JSON, nullable=False),
    # everything else the person chose: options, preprocess, postprocess, output_format, use_cache, speak_with
    Column("created_at", Float, nullable=False, index=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("timings", JSON, nullable=False),
    Column("error", Text, nullable=True),
    # the message the person saw (never a traceback: those go to the log with the id it names)
    Column("output_path", Text, nullable=True, index=True),
    Column("master_path", Text, nullable=True, index=True),
    # a lossless copy when the output format is lossy: exports are re-encoded from it
    Column("output_bytes", Integer, nullable=False),
    Column("sample_rate", Integer, nullable=True),
    Column("duration_s", Float, nullable=True),
    Column("cached", Boolean, nullable=False),
    Column("provenance", JSON, nullable=False),
    # model file hashes, app and environment versions, seed: exactly how the output was made
    Column("host", String(200), nullable=True),
    # beyond one host (jobs.distributed): the host running it, and until when its lease holds (renewed while it runs)
    Column("claim", String(32), nullable=True),
    # the one host process that holds the running job (two processes under one host name cannot both renew or end it)
    Column("lease_until", Float, nullable=True),
    # epoch seconds by the database's clock (hosts' clocks may differ)
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    # a Cancel asked of a job another host runs: that host's lease renewal reads it
    Column("published_at", Float, nullable=True),
    # when the front handed it to the broker (None: still waiting for its fair turn)
    Column("host_losses", Integer, nullable=False, server_default="0"),
    # how often a host died while running it: the first loss queues it again, a second interrupts it
)
