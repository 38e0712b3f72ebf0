"""What an operator's monitoring reads: ``GET /metrics`` in Prometheus's text format (``prometheus-client``).

Counted as it happens: jobs ended by architecture and state, each stage's seconds (queue wait, preprocessing,
worker admission/spawn/load/generate, postprocessing, encoding) as histograms, requests the guard refused by
reason. Read at each scrape (nothing on the hot path): workers by architecture, kind, device and state, each
worker's memory, the job lines, the output cache's hits and misses, downloads by state. One registry per app
(tests run several apps in one process).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Dict, Iterator, Mapping, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobs.service import JobEnd

if TYPE_CHECKING:
    from app.actions import Workstation

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGES: Mapping[str, str] = {
    "queue_wait_s": "queue", "pre_s": "pre", "admit_s": "admit", "spawn_s": "spawn", "prepare_s": "shared_assets",
    "load_s": "load", "generate_s": "generate", "post_s": "post", "encode_s": "encode",
}
"""A job's timings (seconds) by the stage each measures."""
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter("voicegen_jobs", "Jobs ended, by architecture and state", ["architecture", "state"], registry=self.registry)
        self.stages = Histogram("voicegen_stage_seconds", "Seconds a job spent in each stage", ["architecture", "stage"],
                                buckets=BUCKETS_S, registry=self.registry)
        self.rejected = Counter("voicegen_rejected_requests", "Requests the guard refused, by reason", ["reason"], registry=self.registry)

    def job_ended(self, end: JobEnd) -> None:
        """The job service's hook: never raises into it."""
        architecture, state, timings = end.architecture, end.state, end.timings
        try:
            self.jobs.labels(architecture, state).inc()
            for key, stage in STAGES.items():
                value = timings.get(key)
                if isinstance(value, (int, float)) and value >= 0:
                    self.stages.labels(architecture, stage).observe(float(value))
        except Exception:  # metrics must never fail a job
            logger.exception("could not count a job's metrics")

    def refused(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def watch(self, station: Workstation) -> None:
        self.registry.register(StationCollector(station))

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


class StationCollector(Collector):
    """Read at scrape time from the parts that know: the supervisor, the job service, the cache, the model manager."""

    def __init__(self, station: Workstation) -> None:
        self.station = station

    def describe(self) -> Iterator[Metric]:
        return iter(())  # nothing fixed to describe: everything is read at collect

    def collect(self) -> Iterator[Metric]:
        station = self.station
        workers = GaugeMetricFamily("voicegen_workers", "Live workers", labels=["architecture", "kind", "device", "state"])
        memory = GaugeMetricFamily("voicegen_worker_memory_bytes", "What each worker's memory is accounted at",
                                   labels=["worker", "architecture", "device"])
        counted: Dict[Tuple[str, str, str, str], int] = {}
        for row in station.supervisor.status():
            if not row.get("name"):
                continue
            key = (row["architecture"], row.get("kind", ""), row.get("device", ""), row.get("state", ""))
            counted[key] = counted.get(key, 0) + 1
            memory.add_metric([row["name"], row["architecture"], row.get("device", "")], float(row.get("memory_mb") or 0) * (1 << 20))
        for key, count in counted.items():
            workers.add_metric(list(key), count)
        yield workers
        yield memory
        lines = GaugeMetricFamily("voicegen_jobs_in_line", "Jobs running and queued", labels=["architecture", "state"])
        for row in station.jobs.queue_summary():
            lines.add_metric([row["architecture"], "running"], row["running"])
            lines.add_metric([row["architecture"], "queued"], row["queued"])
        yield lines
        cache = CounterMetricFamily("voicegen_cache_lookups", "Output cache lookups", labels=["result"])
        cache.add_metric(["hit"], station.cache.hits)
        cache.add_metric(["miss"], station.cache.misses)
        yield cache
        downloads = GaugeMetricFamily("voicegen_downloads", "Model downloads, by state", labels=["state"])
        states: Dict[str, int] = {}
        for row in station.models.downloads():
            states[str(row.get("state", ""))] = states.get(str(row.get("state", "")), 0) + 1
        for state, count in states.items():
            downloads.add_metric([state], count)
        yield downloads
        stems = station.service_runner.runner.covers.stems
        separations = CounterMetricFamily("voicegen_cover_separations", "Songs separated for covers in this process (a song whose "
                                          "stems were kept is not separated again)", labels=[])
        separations.add_metric([], stems.separations)
        yield separations

