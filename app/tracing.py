"""OpenTelemetry traces of jobs (``opentelemetry-sdk``), exported over OTLP/HTTP when ``otlp_endpoint`` is set.

One trace per job: a ``job`` span from its submission to its end (job id, architecture, state as attributes), with
a child per stage in the order they ran: ``queue``, ``pre``, ``worker.admit``, ``worker.spawn``,
``worker.shared_assets``, ``worker.load``, ``worker.generate``, ``post``, ``encode``. The spans are written when the
job ends, from the durations the job measured anyway (its timings), so tracing adds nothing to a job's own path; a
stage the job did not go through (a warm worker's spawn) has no span. The log line of each job's end carries the
trace id, so a log line leads to its trace.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Tuple

from jobs.service import JobEnd

logger = logging.getLogger("voicegen.jobs")

STAGES: Tuple[Tuple[str, str], ...] = (
    ("pre_s", "pre"), ("admit_s", "worker.admit"), ("spawn_s", "worker.spawn"), ("prepare_s", "worker.shared_assets"),
    ("load_s", "worker.load"), ("generate_s", "worker.generate"), ("post_s", "post"), ("encode_s", "encode"),
)
NS = 1_000_000_000


class Tracing:
    def __init__(self, otlp_endpoint: str = "", service_name: str = "voicegen") -> None:
        """No endpoint: no exporter (spans are still made, so each job's log line has a trace id)."""
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")))
        self.tracer = self.provider.get_tracer("voicegen.jobs")

    def job_ended(self, end: JobEnd) -> Optional[str]:
        """Write the job's trace; its trace id (hex), or None if it could not be made (never raises into the job service)."""
        try:
            from opentelemetry import trace

            root = self.tracer.start_span("job", start_time=int(end.created_at * NS),
                                          attributes={"job.id": end.job_id, "voicegen.architecture": end.architecture,
                                                      "voicegen.state": end.state})
            context = trace.set_span_in_context(root)
            spans: List[Tuple[str, float, float]] = [("queue", end.created_at, end.started_at)]
            at = end.started_at
            for key, name in STAGES:
                value = end.timings.get(key)
                if isinstance(value, (int, float)) and value > 0:
                    spans.append((name, at, at + float(value)))
                    at += float(value)
            for name, start, stop in spans:
                child = self.tracer.start_span(name, context=context, start_time=int(start * NS),
                                               attributes={"job.id": end.job_id, "voicegen.architecture": end.architecture})
                child.end(end_time=int(min(stop, end.finished_at) * NS))
            root.end(end_time=int(end.finished_at * NS))
            trace_id = "%032x" % root.get_span_context().trace_id
        except Exception:  # traces must never fail a job
            logger.exception("could not write job %s's trace", end.job_id)
            return None
        total_s = round(end.finished_at - end.created_at, 3)
        logger.info("job %s %s architecture=%s trace_id=%s total_s=%.3f", end.job_id, end.state, end.architecture, trace_id, total_s,
                    extra={"job_id": end.job_id, "state": end.state, "architecture": end.architecture, "trace_id": trace_id,
                           "total_s": total_s})
        return trace_id

    def shutdown(self) -> None:
        self.provider.shutdown()  # flushes what is batched
