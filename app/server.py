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
from types import FrameType
from typing import Callable, Optional, Tuple

from app.settings import Settings

logger = logging.getLogger(__name__)


def prepare_process_environment(settings: Settings) -> None:
    """Before gradio is imported: keep its files in our data dir, and never phone home. The hub is
    reached only by the model manager, when a person asks for a download (workers run offline)."""
    settings.temp_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(settings.temp_dir))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def warm_request_cycle(url: str, auth: Optional[Tuple[str, str]]) -> None:
    """Gradio's first request through its queue costs ~1 s here; pay it now rather than in a person's first job."""
    from gradio_client import Client

    try:
        Client(url, auth=auth, verbose=False).predict(api_name="/list_architectures")
    except Exception as exc:  # a failed warm-up must not stop the app
        logger.warning("warming the request cycle failed: %s", exc)


def serve(settings: Settings, free_port: Callable[[], None] = lambda: None) -> None:
    """``free_port``: stop whatever answered on the address while the app loaded (its starting page)."""
    prepare_process_environment(settings)
    from app.access import ConfigurationError
    from app.bootstrap import make_workstation
    from app.http_api import add_http_routes
    from app.ui import build_ui
    from pipeline.warmup import warm_up

    try:
        station = make_workstation(settings)
    except ConfigurationError as exc:
        raise SystemExit(str(exc)) from None
    access = station.access
    auth = access.first_credentials()
    recovered = station.jobs.recover()
    if recovered["interrupted"] or recovered["requeued"] or recovered["failed"]:
        print("Jobs from the last run: %(interrupted)d interrupted (Retry in History), %(requeued)d queued again, "
              "%(failed)d could not be run" % recovered, flush=True)
    # Pay one-off costs (audio library imports, the default worker's spawn and load) before "Ready."
    warmers = [threading.Thread(target=warm_up, name="pipeline-warmup", daemon=True)]
    station.pin_configured()
    station.start_memory_sampler()
    if settings.prewarm:
        warmers.append(threading.Thread(target=station.prewarm_configured, name="prewarm", daemon=True))
    for thread in warmers:
        thread.start()

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        station.close()
        sys.exit(0)

    atexit.register(station.close)
    signal.signal(signal.SIGTERM, stop)
    demo = build_ui(station)
    demo.queue(default_concurrency_limit=settings.max_concurrent_jobs)
    if settings.share and not access.needs_login:
        print("WARNING: sharing without --auth user:pass: anyone with the link can use this machine.", flush=True)
    elif access.shared and not access.needs_login:
        print("WARNING: serving on %s without --auth: anyone who can reach this address can use this machine." % settings.host,
              flush=True)
    if access.restricted and not access.admins:
        print("Note: no --admins named: runtime controls and model management are off for every user.", flush=True)
    url = settings.url
    print("Voice workstation: %s" % url, flush=True)
    launch_output = io.StringIO()
    free_port()
    try:
        # Gradio explains a failed share tunnel over many lines; we say it in one (below) and log its text.
        with contextlib.redirect_stdout(launch_output):
            fastapi_app, _, share_url = demo.launch(
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
            )
    except OSError as exc:
        station.close()
        raise SystemExit("cannot serve on %s: %s" % (url, exc)) from exc
    add_http_routes(fastapi_app, station)
    if launch_output.getvalue().strip():
        logger.debug("gradio: %s", " ".join(launch_output.getvalue().split()))
    if settings.share:
        if share_url:
            print("Share link: %s" % share_url, flush=True)
        else:
            print("Share link could not be made (offline or tunnel blocked); serving locally at %s" % url, flush=True)
    for thread in warmers:
        thread.join()
    warm_request_cycle(url, auth)
    print("Ready.", flush=True)
    try:
        demo.block_thread()
    finally:
        station.close()
