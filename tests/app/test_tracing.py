"""A trace per job reaches an OTLP receiver (issue 21): the test runs a real OTLP/HTTP endpoint, decodes what
arrives with OpenTelemetry's own protobuf classes, and finds each job's trace rooted in the request that submitted it
(gradio_client's /generate and streamed /generate_stream, an HTTP POST /v1/audio/speech, the Generate button pressed in
Chromium): the request span has no parent and carries the job id, every stage of the Piper job is its child, lies within
its time and starts when it really started, and the app's JSON log line for that job (``log_format = "json"``) names
the same trace. A request that submitted no job leaves no span."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from typing import Dict, Iterator, List, NamedTuple

import httpx
import pytest
from gradio_client import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.tracing import Tracing, request_span, trace_submissions
from jobs.queue import JobEnd
from tests.conftest import AppServer, start_app, wait_until

STAGES = {"queue", "worker.generate", "post", "encode"}  # a warm Piper job's (text has no preprocessing stage)


class Span(NamedTuple):
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a trace's root
    name: str
    start_ns: int
    end_ns: int
    attributes: Dict[str, str]


class Receiver(http.server.BaseHTTPRequestHandler):
    spans: List[Span] = []

    def do_POST(self) -> None:  # the standard library names it
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {item.key: item.value.string_value or str(item.value.int_value) for item in span.attributes}
                    Receiver.spans.append(Span(span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name,
                                               span.start_time_unix_nano, span.end_time_unix_nano, attributes))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    Receiver.spans = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def app(receiver: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    server = start_app(tmp_path_factory.mktemp("tracing") / "data", extra_env={
        "VOICEGEN_OTLP_ENDPOINT": receiver, "OTEL_BSP_SCHEDULE_DELAY": "200", "VOICEGEN_LOG_FORMAT": "json"})
    yield server
    server.stop()


def request_trace(job_id: str, root_name: str) -> List[Span]:
    """The job's trace once its request span and its stages have arrived: the root first."""
    def arrived() -> bool:
        roots = [span for span in Receiver.spans if span.name == root_name and span.attributes.get("job.id") == job_id]
        return bool(roots) and STAGES <= {span.name for span in Receiver.spans if span.trace_id == roots[0].trace_id}

    assert wait_until(arrived, 20), [(span.name, span.attributes) for span in Receiver.spans]
    [root] = [span for span in Receiver.spans if span.name == root_name and span.attributes.get("job.id") == job_id]
    return [root, *(span for span in Receiver.spans if span.trace_id == root.trace_id and span != root)]


def check_rooted_in_the_request(trace: List[Span], job_id: str) -> None:
    root, children = trace[0], trace[1:]
    assert root.parent_span_id == "" and root.end_ns > root.start_ns
    assert {span.name for span in children} >= STAGES and "job" not in {span.name for span in children}
    for span in children:
        assert span.parent_span_id == root.span_id, (span.name, span.parent_span_id, root.span_id)
        assert span.attributes["job.id"] == job_id and span.attributes["voicegen.architecture"] == "piper"
        assert root.start_ns <= span.start_ns <= span.end_ns <= root.end_ns, (span.name, span.start_ns - root.start_ns,
                                                                              root.end_ns - span.end_ns)
    by_name = {span.name: span for span in children}
    ordered = sorted(children, key=lambda span: span.start_ns)
    assert ordered[0].name == "queue" and [span.name for span in ordered][-2:] == ["post", "encode"]
    for before, after in itertools.pairwise(ordered):  # one after another, in the order they ran
        assert before.end_ns <= after.start_ns, (before.name, after.name, after.start_ns - before.end_ns)
    # real starts, not durations laid end to end from the job's start: the worker was called after the runner's own
    # work (the cache, the output's key), and post-processing began when its answer was back
    first_worker_stage = next(span for span in ordered if span.name.startswith("worker."))
    assert first_worker_stage.start_ns > by_name["queue"].end_ns
    assert 0 <= by_name["post"].start_ns - by_name["worker.generate"].end_ns < 50_000_000


def job_log_line(app: AppServer, job_id: str) -> Dict[str, object]:
    assert wait_until(lambda: any(line.startswith("{") and job_id in line and "trace_id" in line for line in app.log), 10)
    [line] = [json.loads(line) for line in app.log if line.startswith("{") and job_id in line and "trace_id" in line]
    return dict(line)


@pytest.mark.slow
def test_a_gradio_calls_job_trace_is_rooted_in_the_call(app: AppServer) -> None:
    _, info = Client(app.url, verbose=False).predict("piper", "joe", "A traced sentence.", None, {}, "wav", {}, {}, False,
                                                     api_name="/generate")
    job_id = info["job_id"]
    trace = request_trace(job_id, "gradio /generate")
    check_rooted_in_the_request(trace, job_id)
    line = job_log_line(app, job_id)  # the job's log line: JSON, its fields as keys
    assert line["trace_id"] == trace[0].trace_id and line["state"] == "succeeded" and line["level"] == "info"
    assert float(str(line["total_s"])) > 0


@pytest.mark.slow
def test_an_http_requests_job_trace_is_rooted_in_the_request_and_others_leave_none(app: AppServer) -> None:
    assert httpx.get(app.url + "v1/models", timeout=30).status_code == 200  # submits no job: no span
    answer = httpx.post(app.url + "v1/audio/speech", timeout=120, json={"model": "piper", "voice": "joe", "input": "Traced over HTTP.",
                                                                        "response_format": "wav", "stream": False, "cache": False})
    assert answer.status_code == 200 and answer.content[:4] == b"RIFF", answer.text[:300]
    assert wait_until(lambda: any(span.name == "POST /v1/audio/speech" for span in Receiver.spans), 20)
    [job_id] = {span.attributes["job.id"] for span in Receiver.spans if span.name == "POST /v1/audio/speech"}
    trace = request_trace(job_id, "POST /v1/audio/speech")
    assert trace[0].attributes["http.response.status_code"] == "200" and trace[0].attributes["url.path"] == "/v1/audio/speech"
    check_rooted_in_the_request(trace, job_id)
    assert job_log_line(app, job_id)["trace_id"] == trace[0].trace_id
    assert not [span for span in Receiver.spans if "/v1/models" in span.name]


@pytest.mark.slow
def test_a_streaming_gradio_calls_job_trace_is_rooted_in_the_whole_stream(app: AppServer) -> None:
    """/generate_stream is a generator Gradio steps on its threads: its span runs from the first step to the last."""
    job = Client(app.url, verbose=False).submit("piper", "joe", "One piece. And another piece.", None, None, "wav", None, None, False,
                                                None, api_name="/generate_stream")
    outputs = list(job)
    job_id = outputs[-1][1]["job_id"]
    assert outputs[-1][1]["final"] and len(outputs) >= 2
    trace = request_trace(job_id, "gradio /generate_stream")
    check_rooted_in_the_request(trace, job_id)
    assert job_log_line(app, job_id)["trace_id"] == trace[0].trace_id


@pytest.mark.slow
@pytest.mark.browser
def test_the_generate_buttons_job_trace_is_rooted_in_the_click(app: AppServer) -> None:
    """A person in Chromium presses Generate (a private Gradio event, streamed: the live player, then the take)."""
    from playwright.sync_api import expect

    from tests.app.test_browser import browser_page

    before = {span.trace_id for span in Receiver.spans}
    with browser_page(app.url) as page:
        page.get_by_label("Text", exact=True).fill("Traced from a browser.")
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("audio[src]").first).to_be_attached(timeout=60_000)
        assert wait_until(lambda: any(span.name == "gradio Generate" and span.trace_id not in before for span in Receiver.spans), 30)
    [job_id] = {span.attributes["job.id"] for span in Receiver.spans if span.name == "gradio Generate"}
    check_rooted_in_the_request(request_trace(job_id, "gradio Generate"), job_id)


class FastJobs:
    """A station whose job ends before ``submit`` returns: the job service's thread ran a cache hit to its end while
    the request's thread waited to be scheduled (here: made to wait)."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.ended = threading.Event()

    def submit(self, job_id: str) -> str:
        now = time.time()
        end = JobEnd(job_id, "piper", "succeeded", {"generate_s": 0.001}, now, now, now + 0.002)
        threading.Thread(target=lambda: (self.tracing.job_ended(end), self.ended.set())).start()
        time.sleep(0.3)  # the request's thread is not scheduled
        assert not self.ended.is_set()  # the job's end waits for this submit to return
        return job_id


def test_a_job_that_ends_before_its_submit_returns_still_hangs_under_its_request() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracing = Tracing()
    exporter = InMemorySpanExporter()
    tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
    station = FastJobs(tracing)
    trace_submissions(station)
    with request_span("POST /v1/audio/speech", {}):
        station.submit("fast-job")
    assert station.ended.wait(5)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"POST /v1/audio/speech", "queue", "worker.generate"}, set(spans)
    root = spans["POST /v1/audio/speech"]
    assert root.parent is None and root.attributes is not None and root.attributes["job.id"] == "fast-job"
    for child in (spans["queue"], spans["worker.generate"]):
        assert child.parent is not None and child.parent.span_id == root.context.span_id
