"""The job table. Times are epoch seconds (floats): cheap to write, sort and compare in any database."""

from __future__ import annotations

from typing import Any, Dict, Optional

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = "queued", "running", "succeeded", "failed", "cancelled", "interrupted"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
ACTIVE_STATES = (QUEUED, RUNNING)
ENDED_STATES = (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    """Whose history it is: a user (with logins), a browser, or a gradio_client session."""
    session: Mapped[str] = mapped_column(String(200), default="")
    """What a Cancel of "my jobs" reaches: one browser tab, one client, one HTTP request."""
    batch_id: Mapped[Optional[str]] = mapped_column(String(32), index=True, nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    architecture: Mapped[str] = mapped_column(String(64))
    character: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text, default="")
    input_name: Mapped[Optional[str]] = mapped_column(String(300), nullable=True)
    input_sha256: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    input_path: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    """A copy of the input recording (within a size limit), so a queued job survives a restart and can be re-made."""
    request: Mapped[Dict[str, Any]] = mapped_column(JSON)
    """Everything else the person chose: options, preprocess, postprocess, output_format, use_cache, speak_with."""
    created_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    finished_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    timings: Mapped[Dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    """The message the person saw (never a traceback: those go to the log with the id it names)."""
    output_path: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    master_path: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    """A lossless copy when the output format is lossy: exports are re-encoded from it."""
    output_bytes: Mapped[int] = mapped_column(Integer, default=0)
    sample_rate: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    duration_s: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    provenance: Mapped[Dict[str, Any]] = mapped_column(JSON, default=dict)
    """Model file hashes, app and environment versions, seed: exactly how the output was made."""
