"""A trace per job reaches an OTLP receiver (issue 21): the test runs a real OTLP/HTTP endpoint, decodes what
arrives with OpenTelemetry's own protobuf classes, and finds each stage of a Piper job under one trace, the job id
on it, and the same trace id in the app's JSON log line for that job (``log_format = "json"``)."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from gradio_client import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import AppServer, start_app, wait_until


class Receiver(http.server.BaseHTTPRequestHandler):
    spans: List[Tuple[str, str, Dict[str, str]]] = []  # (trace id hex, name, string attributes)

    def do_POST(self) -> None:  # the standard library names it
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {item.key: item.value.string_value for item in span.attributes}
                    Receiver.spans.append((span.trace_id.hex(), span.name, attributes))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.spans = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_a_jobs_trace_with_its_stages_arrives_at_the_collector(receiver: str, tmp_path: Path) -> None:
    app: AppServer = start_app(tmp_path / "data", extra_env={"VOICEGEN_OTLP_ENDPOINT": receiver, "OTEL_BSP_SCHEDULE_DELAY": "200",
                                                             "VOICEGEN_LOG_FORMAT": "json"})
    try:
        _, info = Client(app.url, verbose=False).predict("piper", "joe", "A traced sentence.", None, {}, "wav", {}, {}, False,
                                                         api_name="/generate")
        job_id = info["job_id"]
        assert wait_until(lambda: any(attrs.get("job.id") == job_id and name == "job" for _, name, attrs in Receiver.spans), 20)
        [trace_id] = {trace for trace, name, attrs in Receiver.spans if name == "job" and attrs.get("job.id") == job_id}
        names = {name for trace, name, _ in Receiver.spans if trace == trace_id}
        assert {"job", "queue", "worker.generate", "post", "encode"} <= names  # (text has no preprocessing stage)
        assert all(attrs.get("voicegen.architecture") == "piper" for trace, _, attrs in Receiver.spans if trace == trace_id)
        assert wait_until(lambda: job_id in "\n".join(app.log), 10)  # the job's log line: JSON, its fields as keys
        [line] = [json.loads(line) for line in app.log if line.startswith("{") and job_id in line]
        assert line["trace_id"] == trace_id and line["state"] == "succeeded" and line["level"] == "info" and line["total_s"] > 0
    finally:
        app.stop()
