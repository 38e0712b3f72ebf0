"""OpenTelemetry traces of jobs (``opentelemetry-sdk``), exported over OTLP/HTTP when ``otlp_endpoint`` is set.

One trace per job, rooted in the request that submitted it: an HTTP route (``RequestSpans``, e.g. ``POST
/v1/audio/speech``), a named Gradio endpoint (``traced_endpoint``, e.g. ``gradio /generate``, ``gradio
/generate_stream``) or the Generate tab's buttons (``gradio Generate``, ``gradio New take``) opens a span when the
request starts and ends it when the request ends (real times; a streaming event's from its first step to its last);
``job_submitted`` (the Workstation's submit) ties each job it submits to that span (``job.id`` on it). At the job's
end its stages become the request span's children: ``queue`` (submission to start, real times), then ``pre``,
``worker.admit``, ``worker.spawn``, ``worker.shared_assets``, ``worker.load``, ``worker.generate``, ``post``,
``encode``, each as long as the job measured it (its timings). Their starts are real where the runner marks them
(``stage_began``: ``pre``, the call to the worker, its answer back, ``post``; a dict entry per mark, only for a traced
request's job); the stages between marks follow on from the one before (the worker's admit/spawn/shared-assets/load
from the call, ``encode`` after ``post``). A stage the job did not go through (a warm worker's spawn) has no span. A
request that submits no job leaves no span (it is never ended, so never exported). A job with no traced request (a
Retry; History's Regenerate and the batch tab's buttons, private Gradio events not wrapped yet; one queued again after
a restart) gets a ``job`` span of its own as the root, its stages laid one after another from its start. The log line
of each job's end carries the trace id, and so does every JSON log line written inside the request once it submitted a
job (``app.logs``).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import inspect
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

if TYPE_CHECKING:
    from jobs.service import JobEnd

logger = logging.getLogger("voicegen.jobs")

STAGES: Tuple[Tuple[str, str], ...] = (
    ("pre_s", "pre"), ("admit_s", "worker.admit"), ("spawn_s", "worker.spawn"), ("prepare_s", "worker.shared_assets"),
    ("load_s", "worker.load"), ("generate_s", "worker.generate"), ("post_s", "post"), ("encode_s", "encode"),
)
NS = 1_000_000_000
PENDING_JOBS_MAX = 4096
SUBMIT_WAIT_S = 1.0
"""How long a job's end waits for the submits under way to return (only when one is, and the job is not known yet)."""
"""Jobs remembered with their request span until they end (a bound: jobs that never end in this process are dropped)."""


@dataclass
class _Request:
    span: Any  # an opentelemetry Span
    job_ids: List[str] = field(default_factory=list)


_ACTIVE: Optional[Tracing] = None
"""The app's tracing (the last made in this process; None until one is): what requests and submissions report to."""
_REQUEST: contextvars.ContextVar[Optional[_Request]] = contextvars.ContextVar("voicegen_request", default=None)


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
        self._requests: collections.OrderedDict[str, Any] = collections.OrderedDict()
        """Job id -> the span of the request that submitted it, until the job ends."""
        self._marks: Dict[str, Dict[str, float]] = {}
        """Job id -> wall-clock starts the runner marked (``stage_began``), for a job of a traced request."""
        self._lock = threading.Condition()
        self._submitting = 0
        """Submissions inside traced requests under way: a job that ends before its submit returned waits for them."""
        global _ACTIVE
        _ACTIVE = self

    def submitted(self, job_id: str, request_span: Any) -> None:
        with self._lock:
            self._requests[job_id] = request_span
            while len(self._requests) > PENDING_JOBS_MAX:
                self._marks.pop(self._requests.popitem(last=False)[0], None)
            self._lock.notify_all()

    @contextlib.contextmanager
    def submitting(self) -> Iterator[None]:
        with self._lock:
            self._submitting += 1
        try:
            yield
        finally:
            with self._lock:
                self._submitting -= 1
                self._lock.notify_all()

    def mark(self, job_id: str, name: str, at: float) -> None:
        with self._lock:
            if job_id in self._requests:  # only a traced request's job: nothing kept for the others
                self._marks.setdefault(job_id, {})[name] = at

    def _stage_spans(self, end: JobEnd, marks: Dict[str, float]) -> List[Tuple[str, float, float]]:
        """(name, start, end) of each stage the job went through. Starts are real where the runner marked them: ``pre``,
        the first worker stage (the call to the worker), ``worker.generate`` (it ends when the worker's answer is back),
        ``post``; the stages between follow on from the one before by their measured durations."""
        spans: List[Tuple[str, float, float]] = [("queue", end.created_at, end.started_at)]
        at, in_worker = end.started_at, False
        for key, name in STAGES:
            value = end.timings.get(key)
            if not isinstance(value, (int, float)) or value <= 0:
                continue
            duration_s = float(value)
            if name == "pre" and "pre" in marks:
                at = marks["pre"]
            elif name.startswith("worker.") and not in_worker and "worker" in marks:
                at = marks["worker"]
            if name == "worker.generate" and "worker_end" in marks:
                at = max(at, marks["worker_end"] - duration_s)
            elif name == "post" and "post" in marks:
                at = marks["post"]
            in_worker = in_worker or name.startswith("worker.")
            spans.append((name, at, at + duration_s))
            at += duration_s
        return spans

    def job_ended(self, end: JobEnd) -> Optional[str]:
        """Write the job's trace; its trace id (hex), or None if it could not be made (never raises into the job service)."""
        try:
            from opentelemetry import trace

            attributes = {"job.id": end.job_id, "voicegen.architecture": end.architecture, "voicegen.state": end.state}
            with self._lock:
                if self._submitting and end.job_id not in self._requests:
                    # it may have ended before its submit returned (a cache hit while the request's thread was not
                    # scheduled): wait, on the job's thread after its end, until the submits under way have returned
                    self._lock.wait_for(lambda: end.job_id in self._requests or not self._submitting, SUBMIT_WAIT_S)
                request_span = self._requests.pop(end.job_id, None)
                marks = self._marks.pop(end.job_id, {})
            root = request_span if request_span is not None else self.tracer.start_span("job", start_time=int(end.created_at * NS),
                                                                                        attributes=attributes)
            context = trace.set_span_in_context(root)
            spans = self._stage_spans(end, marks)
            for name, start, stop in spans:
                child = self.tracer.start_span(name, context=context, start_time=int(start * NS), attributes=attributes)
                child.end(end_time=int(min(stop, end.finished_at) * NS))
            if request_span is None:
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


def trace_submissions(station: Any) -> None:
    """Every job the station submits (``Workstation.submit``: the HTTP routes, Gradio's endpoints and buttons, batches)
    is told to ``job_submitted``. Wrapped here, where the server is put together, while app/actions.py is another's to
    edit: the same one line belongs at the end of ``Workstation.submit``."""
    submit = station.submit

    @functools.wraps(submit)
    def submitted(*args: Any, **kwargs: Any) -> str:
        tracing = _ACTIVE
        if tracing is None or _REQUEST.get() is None:
            return str(submit(*args, **kwargs))
        with tracing.submitting():
            job_id: str = submit(*args, **kwargs)
            job_submitted(job_id)
        return job_id

    station.submit = submitted


def job_submitted(job_id: str) -> None:
    """Inside a traced request, that request becomes the root of the job's trace (``job.id`` on its span)."""
    request = _REQUEST.get()
    tracing = _ACTIVE
    if request is None or tracing is None:
        return
    request.job_ids.append(job_id)
    if len(request.job_ids) == 1:
        request.span.set_attribute("job.id", job_id)
    else:  # a batch: one request, one trace, each job's stages marked with its id
        request.span.set_attribute("job.ids", tuple(request.job_ids))
    tracing.submitted(job_id, request.span)


def stage_began(job_id: str, name: str) -> None:
    """The runner's mark: stage ``name`` of the job starts now (``pre``, ``worker``, ``worker_end``, ``post``)."""
    tracing = _ACTIVE
    if tracing is not None:
        tracing.mark(job_id, name, time.time())


def current_trace_id() -> Optional[str]:
    """The trace id (hex) of the request being served here, once it submitted a job (before that it may never be exported)."""
    request = _REQUEST.get()
    if request is None or not request.job_ids:
        return None
    return "%032x" % request.span.get_span_context().trace_id


@contextlib.contextmanager
def request_span(name: str, attributes: Dict[str, Any]) -> Iterator[Optional[_Request]]:
    """A span over a request, from now to the end of the ``with``; ended (so exported) only if it submitted a job."""
    tracing = _ACTIVE
    if tracing is None or _REQUEST.get() is not None:  # no tracing, or inside a traced request already (a route calling another)
        yield None
        return
    request = _Request(tracing.tracer.start_span(name, attributes=attributes))
    token = _REQUEST.set(request)
    try:
        yield request
    except BaseException as exc:
        if request.job_ids:
            request.span.record_exception(exc)
        raise
    finally:
        _REQUEST.reset(token)
        if request.job_ids:
            request.span.end()


def traced_endpoint(name: str, fn: Callable[..., Any], enabled: Callable[[], bool], span_name: str = "") -> Callable[..., Any]:
    """A Gradio event's function whose calls are request spans (``gradio /<name>`` for a named endpoint, or
    ``span_name``), from the call to its return, or for a generator (a streaming event) from its first step to its
    last. Gradio reads the wrapped function's signature (``__wrapped__``); coroutines are left as they are."""
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return fn
    span_name = span_name or "gradio /" + name
    attributes = {"gradio.event": name}
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def steps(*args: Any, **kwargs: Any) -> Iterator[Any]:
            tracing = _ACTIVE
            if tracing is None or not enabled() or _REQUEST.get() is not None:
                yield from fn(*args, **kwargs)
                return
            request = _Request(tracing.tracer.start_span(span_name, attributes=attributes))
            inner = fn(*args, **kwargs)
            try:
                while True:
                    # Gradio may run each step on another thread: the request is current during each step only
                    token = _REQUEST.set(request)
                    try:
                        value = next(inner)
                    except StopIteration:
                        return
                    finally:
                        _REQUEST.reset(token)
                    yield value
            finally:
                inner.close()
                if request.job_ids:
                    request.span.end()

        return steps

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if not enabled():
            return fn(*args, **kwargs)
        with request_span(span_name, attributes):
            return fn(*args, **kwargs)

    return call


class RequestSpans:
    """ASGI middleware: each request to the HTTP API (``/v1/``) is a request span (``POST /v1/audio/speech``) from its
    arrival to its last byte sent, with its response status; the job it submits hangs under it."""

    def __init__(self, app: Any, enabled: Callable[[], bool], prefix: str = "/v1/") -> None:
        self.app, self.enabled, self.prefix = app, enabled, prefix

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefix) or _ACTIVE is None or not self.enabled():
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        with request_span("%s %s" % (method, path), {"http.request.method": method, "url.path": path}) as request:

            async def sent(message: Dict[str, Any]) -> None:
                if request is not None and message["type"] == "http.response.start":
                    request.span.set_attribute("http.response.status_code", int(message["status"]))
                await send(message)

            await self.app(scope, receive, sent)


def request_spans(station: Any) -> Any:
    """``RequestSpans`` for the server's middleware list, on while the station's ``telemetry`` setting is."""
    from starlette.middleware import Middleware

    return Middleware(RequestSpans, enabled=lambda: bool(station.settings.telemetry))
