"""The worker scaffold: runs one adapter inside its architecture's environment.

Started by the supervisor as ``<env python> -m runtimes.worker --adapter MOD:CLASS --address ADDR``
with the per-launch secret on stdin. It owns the socket, framing, heartbeats, parent-death watch and
turning exceptions into structured errors, and the characters it holds (by key); adapters only load,
unload and generate.
Standard library + numpy only; Python 3.9 syntax.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Client
from typing import Any, Dict, List, Optional

from runtimes.adapter import Adapter, GenerateRequest, ModelRef
from runtimes.errors import BadRequestError, JobCancelledError
from runtimes.protocol import (
    EXIT_CODE_BOOT_FAILED,
    EXIT_CODE_CONNECT_FAILED,
    HEARTBEAT_INTERVAL_S,
    PROTOCOL_VERSION,
    Channel,
    address_from_text,
    socket_family,
)

logger = logging.getLogger("worker")


def load_adapter_class(entry_point: str) -> type:
    module_name, _, class_name = entry_point.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)  # type: ignore[no-any-return]


def die_with_group() -> None:
    """The app is gone: take our whole process group (our children too) down with us."""
    try:
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(0)


class Worker:
    def __init__(self, adapter: Adapter, data: Channel, control: Channel) -> None:
        self.adapter = adapter
        self.characters: Dict[str, Any] = {}  # key -> what adapter.load returned
        self.data = data
        self.control = control
        self.control_lock = threading.Lock()
        self.parent_pid = os.getppid()
        self.job_id: Optional[str] = None
        self.progress_count = 0
        self.job_progress = 0  # progress messages of the current job: its reply says how many to expect
        self.cancelled_job: Optional[str] = None

    # control channel: runs beside inference, never blocked by it
    def send_control(self, header: Dict[str, Any]) -> None:
        with self.control_lock:
            self.control.send(header)

    def control_reader(self) -> None:
        while True:
            try:
                header, _ = self.control.recv()
            except Exception:  # EOF or a broken frame: the app is gone or misbehaving
                die_with_group()
                return
            kind = header["type"]
            if kind == "ping":
                self.send_control({"type": "pong", "nonce": header.get("nonce")})
            elif kind == "cancel":
                self.cancelled_job = header.get("job")
            elif kind == "shutdown":
                logger.info("shutdown requested")
                die_with_group()

    def heartbeat_sender(self) -> None:
        while True:
            time.sleep(HEARTBEAT_INTERVAL_S)
            if os.getppid() != self.parent_pid:
                die_with_group()
            try:
                self.send_control(
                    {"type": "heartbeat", "job": self.job_id, "progress": self.progress_count, "time": time.time()}
                )
            except Exception:
                die_with_group()

    # data channel: one request at a time
    def serve(self) -> None:
        threading.Thread(target=self.control_reader, name="control", daemon=True).start()
        threading.Thread(target=self.heartbeat_sender, name="heartbeat", daemon=True).start()
        self.data.send(
            {
                "type": "hello",
                "protocol": PROTOCOL_VERSION,
                "pid": os.getpid(),
                "python": sys.version.split()[0],
                "manifest": self.adapter.manifest.to_dict(),
            }
        )
        while True:
            try:
                header, audio = self.data.recv()
            except EOFError:
                die_with_group()
                return
            job = header.get("job")
            try:
                self.handle(header, audio)
            except Exception as exc:  # process boundary: every failure crosses the wire
                if not isinstance(exc, (BadRequestError, JobCancelledError)):
                    logger.exception("job %s failed", job)
                message = str(exc) or type(exc).__name__
                self.data.send(
                    {
                        "type": "error",
                        "job": job,
                        "error": {"type": type(exc).__name__, "message": message, "traceback": traceback.format_exc()},
                    }
                )
            finally:
                self.job_id = None

    def handle(self, header: Dict[str, Any], audio: Any) -> None:
        kind = header["type"]
        job = header.get("job")
        self.job_id = job
        self.job_progress = 0
        started = time.perf_counter()
        # long loads report progress through the adapter itself; it reaches this job
        self.adapter.report_progress = lambda fraction, message: self.report_progress(job, fraction, message)  # type: ignore[method-assign]
        if kind == "prepare":
            self.adapter.load_shared(str(header.get("device", "cpu")))
            self.data.send({"type": "prepared", "job": job, "shared_s": time.perf_counter() - started})
        elif kind == "load":
            model = ModelRef(**header["model"])
            if model.key not in self.characters:
                self.characters[model.key] = self.adapter.load(model)
            details = self.adapter.details(self.characters[model.key])
            self.data.send({"type": "loaded", "job": job, "load_s": time.perf_counter() - started, "details": details})
        elif kind == "unload":
            character = self.characters.pop(str(header.get("key")), None)
            if character is not None:
                self.adapter.unload(character)
            self.data.send({"type": "unloaded", "job": job, "held": len(self.characters)})
        elif kind == "generate":
            key = str(header.get("key"))
            if key not in self.characters:
                raise BadRequestError("character %r is not loaded in this worker" % key)
            request = GenerateRequest(
                text=header.get("text") or "",
                audio=audio,
                audio_sample_rate=header.get("audio_sample_rate"),
                options=self.checked_options(header, audio),
                report_progress=lambda fraction, message: self.report_progress(job, fraction, message),
                is_cancelled=lambda: self.cancelled_job == job,
                streaming=bool(header.get("stream")),
            )
            if header.get("stream"):
                self.stream(job, self.characters[key], request, started)
                return
            result = self.adapter.generate(self.characters[key], request)
            request.check_cancelled()  # cancelled while its last step ran: the person no longer wants the result
            self.data.send(
                {
                    "type": "result",
                    "job": job,
                    "sample_rate": int(result.sample_rate),
                    "generate_s": time.perf_counter() - started,
                    "progress_sent": self.job_progress,
                    "details": request.details,
                },
                audio=result.audio,
            )
        else:
            raise BadRequestError("unknown message type %r" % kind)

    def stream(self, job: Optional[str], character: Any, request: GenerateRequest, started: float) -> None:
        """Each piece the adapter yields goes out as a ``chunk`` as soon as it is made; the ``result`` that ends the
        job carries no audio (the pieces are the take)."""
        rates = set()
        count = 0
        for piece in self.adapter.stream(character, request):
            request.check_cancelled()
            rates.add(int(piece.sample_rate))
            if len(rates) > 1:
                raise RuntimeError("the adapter's pieces changed rate mid-take: %s" % sorted(rates))
            self.data.send({"type": "chunk", "job": job, "index": count, "sample_rate": int(piece.sample_rate),
                            "progress_sent": self.job_progress}, audio=piece.audio)
            count += 1
        request.check_cancelled()
        if not count:
            raise RuntimeError("the adapter made no audio")
        self.data.send({"type": "result", "job": job, "sample_rate": rates.pop(), "chunks": count,
                        "generate_s": time.perf_counter() - started, "progress_sent": self.job_progress, "details": request.details})

    def checked_options(self, header: Dict[str, Any], audio: Any) -> Dict[str, Any]:
        """The request checked against the manifest, as the adapter may rely on: the text or recording it
        needs is there, and its options are known, in range and complete (defaults filled in)."""
        manifest = self.adapter.manifest
        if manifest.needs_text and not str(header.get("text") or "").strip():
            raise BadRequestError("%s needs text to speak" % manifest.display_name)
        if manifest.needs_audio and (audio is None or not getattr(audio, "size", 0)):
            raise BadRequestError("%s needs a recording (audio) to convert" % manifest.display_name)
        reference = manifest.reference
        if reference is not None:
            given = audio is not None and bool(getattr(audio, "size", 0))
            if reference.required and not given:
                raise BadRequestError("%s needs a reference recording of the voice to speak like" % manifest.display_name)
            rate = header.get("audio_sample_rate")
            if given:
                if not rate:
                    raise BadRequestError("the reference recording came without its sample rate")
                problem = reference.problem(audio.shape[0] / float(rate), float(abs(audio).max()))
                if problem:
                    raise BadRequestError(problem)
        try:
            return manifest.resolve_options(header.get("options"))
        except ValueError as exc:
            raise BadRequestError(str(exc)) from None

    def report_progress(self, job: Optional[str], fraction: Optional[float], message: str) -> None:
        self.progress_count += 1
        self.job_progress += 1
        self.send_control({"type": "progress", "job": job, "fraction": fraction, "message": message})


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adapter", required=True, help="module:Class of the adapter")
    parser.add_argument("--address", required=True, help="supervisor socket address")
    parser.add_argument("--name", default="worker")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    sys.stdout = sys.stderr  # the protocol never uses stdout; adapter prints go to the log
    authkey = bytes.fromhex(sys.stdin.readline().strip())
    try:
        adapter = load_adapter_class(args.adapter)()
    except Exception:  # this env cannot run the adapter: restarting will not help
        traceback.print_exc()
        return EXIT_CODE_BOOT_FAILED
    try:
        address = address_from_text(args.address)
        data = Channel(Client(address, family=socket_family(), authkey=authkey))
        control = Channel(Client(address, family=socket_family(), authkey=authkey))
    except Exception:  # the app went away or the key did not match: a new start may work
        traceback.print_exc()
        return EXIT_CODE_CONNECT_FAILED
    Worker(adapter, data, control).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
