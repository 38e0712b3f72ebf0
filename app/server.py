"""Starting the app: the supervisor, the UI, the HTTP server; and stopping it without orphans."""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, List, Optional

from app.settings import Settings

if TYPE_CHECKING:
    from fastapi.routing import APIRoute
    from starlette.routing import BaseRoute

    from app.actions import Workstation

logger = logging.getLogger(__name__)


def prepare_process_environment(settings: Settings) -> None:
    """Before gradio is imported: keep its files in our data dir, and never phone home. The hub is
    reached only by the model manager, when a person asks for a download (workers run offline)."""
    settings.temp_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(settings.temp_dir))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Gradio wraps every event in a matplotlib backend switch; a server has no screen: with the backend named,
    # matplotlib need not import pyplot to find one (the switch's first run 1.1 -> 0.4 s of CPU here)
    os.environ.setdefault("MPLBACKEND", "agg")


def warm_gradio_events() -> None:
    """Gradio runs every event inside its matplotlib backend switch (``gradio.utils.MatplotlibBackendMananger``): the
    first event imported matplotlib (0.4 s of CPU here; 1.1 s with pyplot before MPLBACKEND was set; more the first
    time on a machine: its font cache) while a person's or a script's first request ran beside it, ~1.3 s slower than
    a warm one. Paid before the app takes its address."""
    from gradio.utils import MatplotlibBackendMananger

    with MatplotlibBackendMananger():
        pass


@dataclass
class Warmth:
    """What start-up has paid for. The app takes its address over from the starting page only once all of it is
    behind it, so that its first request runs at warm speed: the audio pipeline's first run, the prewarmed workers,
    and the first Gradio event's one-off import."""

    pipeline: bool = False
    workers: bool = False
    gradio_events: bool = False

    @property
    def ready(self) -> bool:
        return self.pipeline and self.workers and self.gradio_events


def readiness_route(warmth: Warmth) -> APIRoute:
    """``GET /readyz``: 200 with what is warm once the API serves at warm speed (until then the starting page answers
    503 + Retry-After on this address). No credentials needed; it says nothing but these flags."""
    from fastapi.responses import JSONResponse, Response
    from fastapi.routing import APIRoute

    def readyz() -> Response:
        body = {"ready": warmth.ready, "pipeline_warm": warmth.pipeline, "workers_prewarmed": warmth.workers,
                "gradio_events_warm": warmth.gradio_events}
        return JSONResponse(body, status_code=200 if warmth.ready else 503, headers=None if warmth.ready else {"Retry-After": "1"})

    return APIRoute("/readyz", readyz, methods=["GET"], response_class=Response)


def operator_routes(station: Workstation) -> List[BaseRoute]:
    """``GET /healthz``: 200 while the process serves (for an orchestrator's liveness probe; no credentials, no details).
    ``GET /metrics``: Prometheus's text format (``app.metrics``); on a shared server for the operator only (an admin's
    credentials: HTTP Basic, or ``Bearer user:password``)."""
    from fastapi.responses import JSONResponse, Response
    from fastapi.routing import APIRoute
    from starlette.routing import Route

    from app.access import authenticate_header
    from app.metrics import CONTENT_TYPE

    def healthz() -> Response:
        return JSONResponse({"alive": True})

    def metrics(request: Any) -> Response:  # a starlette Request (a plain Route: no annotation for FastAPI to resolve)
        access = station.access
        if access.restricted:
            user = authenticate_header(request.headers.get("authorization", "").encode("latin-1"), access) if access.needs_login else None
            if not user or not access.is_admin(user):
                station.metrics.refused("metrics_not_operator")
                return JSONResponse({"error": {"message": "the metrics are for this server's operator: an admin's credentials"}},
                                    status_code=401 if not user else 403, headers={"www-authenticate": 'Basic realm="voice workstation"'})
        return Response(station.metrics.exposition(), media_type=CONTENT_TYPE)

    return [APIRoute("/healthz", healthz, methods=["GET"], response_class=Response),
            Route("/metrics", metrics, methods=["GET"])]


def first_routes(station: Workstation, warmth: Warmth) -> List[BaseRoute]:
    """Our routes, handed to the server's app when it is made (``app_kwargs``): they come before Gradio's catch-alls,
    and there is no moment with the address served but /v1 not there yet (adding them after ``launch`` returned left
    one: a POST got Gradio's 404)."""
    from fastapi import FastAPI

    from app.http_api import add_http_routes

    holder = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)  # only what add_http_routes adds
    add_http_routes(holder, station)
    return [readiness_route(warmth), *operator_routes(station), *holder.router.routes]


def serve(settings: Settings, free_port: Callable[[], None] = lambda: None) -> None:
    """``free_port``: stop whatever answered on the address while the app loaded (its starting page)."""
    prepare_process_environment(settings)
    from pipeline.warmup import warm_up

    warmth = Warmth()

    def warm_pipeline() -> None:
        warm_up()
        warmth.pipeline = True

    # The pipeline's first run needs nothing of the app: it starts first, beside the imports below.
    warmers = [threading.Thread(target=warm_pipeline, name="pipeline-warmup", daemon=True)]
    warmers[0].start()
    from app.access import ConfigurationError
    from app.bootstrap import make_workstation
    from app.http_api import guard_middleware
    from app.tracing import request_spans, trace_submissions
    from app.ui import build_ui

    def warm_gradio() -> None:
        warm_gradio_events()
        warmth.gradio_events = True

    warmers.append(threading.Thread(target=warm_gradio, name="gradio-warmup", daemon=True))
    warmers[-1].start()
    try:
        station = make_workstation(settings)
        trace_submissions(station)  # a job submitted inside a traced request: that request is its trace's root
    except ConfigurationError as exc:
        raise SystemExit(str(exc)) from None
    access = station.access
    recovered = station.jobs.recover()
    if recovered["interrupted"] or recovered["requeued"] or recovered["failed"]:
        print("Jobs from the last run: %(interrupted)d interrupted (Retry in History), %(requeued)d queued again, "
              "%(failed)d could not be run" % recovered, flush=True)
    station.pin_configured()
    station.start_memory_sampler()

    def prewarm() -> None:
        if settings.prewarm and not settings.broker_url:  # a front runs no jobs here: its hosts hold the workers
            station.prewarm_configured()  # the default worker's spawn and load (failures are logged; the app still starts)
        warmth.workers = True

    warmers.append(threading.Thread(target=prewarm, name="prewarm", daemon=True))
    warmers[-1].start()

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        station.close()
        sys.exit(0)

    atexit.register(station.close)
    signal.signal(signal.SIGTERM, stop)
    demo = build_ui(station)
    demo.queue(default_concurrency_limit=settings.max_concurrent_jobs)
    routes = first_routes(station, warmth)
    if settings.share and not access.needs_login:
        print("WARNING: sharing without --auth user:pass: anyone with the link can use this machine.", flush=True)
    elif access.shared and not access.needs_credentials:
        print("WARNING: serving on %s with neither logins nor API keys (--insecure-public): anyone who can reach this address "
              "can use this machine." % settings.host, flush=True)
    elif access.shared and not access.needs_login:
        print("Note: serving on %s with API keys and no logins: the HTTP routes ask for a key; the UI is open to anyone who "
              "can reach this address." % settings.host, flush=True)
    if access.restricted and not access.admins:
        print("Note: no --admins named: runtime controls and model management are off for every user.", flush=True)
    for thread in warmers:  # "ready" means warm: the starting page keeps the address until a request runs at warm speed
        thread.join()
    url = settings.url
    print("Voice workstation: %s" % url, flush=True)
    launch_output = io.StringIO()
    free_port()
    try:
        # Gradio explains a failed share tunnel over many lines; we say it in one (below) and log its text.
        with contextlib.redirect_stdout(launch_output):
            _, _, share_url = demo.launch(
                server_name=settings.host,
                server_port=settings.port,
                share=settings.share,
                auth=access.check if access.needs_login else None,
                inbrowser=settings.open_browser,
                allowed_paths=[str(settings.outputs_dir)],
                prevent_thread_lock=True,
                quiet=True,
                max_file_size="%dmb" % settings.max_upload_mb,
                footer_links=["api", "settings"],
                app_kwargs={"routes": routes, "middleware": [guard_middleware(station), request_spans(station)]},
            )
    except OSError as exc:
        station.close()
        raise SystemExit("cannot serve on %s: %s" % (url, exc)) from exc
    if launch_output.getvalue().strip():
        logger.debug("gradio: %s", " ".join(launch_output.getvalue().split()))
    if settings.share:
        if share_url:
            print("Share link: %s" % share_url, flush=True)
        else:
            print("Share link could not be made (offline or tunnel blocked); serving locally at %s" % url, flush=True)
    print("Ready.", flush=True)
    try:
        demo.block_thread()
    finally:
        station.close()
