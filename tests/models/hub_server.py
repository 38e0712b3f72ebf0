"""A local stand-in for the Hugging Face hub (the headers ``huggingface_hub`` needs) and for plain
HTTP file hosts (``Range`` requests), with faults a test can ask for: a connection dropped after N
bytes (once), a slow body, a missing file, a redirect, a body without a length. Counts the bytes it serves
per path and keeps every request's method, path and headers."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Fault:
    drop_after_bytes: Optional[int] = None
    """Close the connection after this many body bytes, the first time only."""
    delay_per_chunk_s: float = 0.0
    ignore_range: bool = False
    redirect_to: Optional[str] = None
    """Answer GET with a 302 to this URL (HEAD still answers as the file would: a server whose GET goes elsewhere)."""
    no_length: bool = False
    """Send the body without Content-Length, ending it by closing the connection."""


@dataclass
class Hub:
    files: Dict[str, bytes] = field(default_factory=dict)
    """URL path (e.g. ``/owner/repo/resolve/main/G_0.pth`` or ``/files/x.zip``) -> bytes."""
    faults: Dict[str, Fault] = field(default_factory=dict)
    served_bytes: Dict[str, int] = field(default_factory=dict)
    gets: Dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    etags: Dict[int, str] = field(default_factory=dict)
    requests: List[Tuple[str, str, Dict[str, str]]] = field(default_factory=list)
    """(method, path, headers) of every request, in order."""

    def etag(self, data: bytes) -> str:
        """The sha256 the hub sends as ETag, computed once per file (not per request: a 200 MB hash each time
        would be the server's cost, not the client's)."""
        key = id(data)
        if key not in self.etags:
            self.etags[key] = hashlib.sha256(data).hexdigest()
        return self.etags[key]

    def put_hf(self, repo: str, path: str, data: bytes, revision: str = "main") -> None:
        self.files["/%s/resolve/%s/%s" % (repo, revision, path)] = data

    def put_url(self, name: str, data: bytes) -> str:
        self.files["/files/" + name] = data
        return self.url + "/files/" + name


def _handler(hub: Hub) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _lookup(self) -> Tuple[str, Optional[bytes]]:
            path = unquote(self.path.split("?")[0])
            with hub.lock:
                hub.requests.append((self.command, path, dict(self.headers.items())))
            return path, hub.files.get(path)

        def _headers(self, path: str, data: bytes, status: int, start: int) -> None:
            self.send_response(status)
            if hub.faults.get(path, Fault()).no_length:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", '"%s"' % hub.etag(data))
            self.send_header("X-Repo-Commit", COMMIT)
            if status == 206:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
            self.end_headers()

        def _missing(self) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Error-Message", "Entry not found")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            path, data = self._lookup()
            if data is None:
                return self._missing()
            self._headers(path, data, 200, 0)

        def do_GET(self) -> None:
            path, data = self._lookup()
            fault = hub.faults.get(path, Fault())
            if fault.redirect_to:
                self.send_response(302)
                self.send_header("Location", fault.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if data is None:
                return self._missing()
            start = 0
            wanted = self.headers.get("Range")
            if wanted and not fault.ignore_range:
                start = int(wanted.split("=")[1].split("-")[0])
            with hub.lock:
                hub.gets[path] = hub.gets.get(path, 0) + 1
            self._headers(path, data, 206 if start else 200, start)
            position = start
            while position < len(data):
                chunk = data[position:position + 65536]
                if fault.drop_after_bytes is not None and position - start + len(chunk) > fault.drop_after_bytes:
                    chunk = chunk[: max(0, fault.drop_after_bytes - (position - start))]
                    self._send(path, chunk)
                    fault.drop_after_bytes = None  # once
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._send(path, chunk)
                position += len(chunk)
                if fault.delay_per_chunk_s:
                    time.sleep(fault.delay_per_chunk_s)

        def _send(self, path: str, chunk: bytes) -> None:
            self.wfile.write(chunk)
            self.wfile.flush()
            with hub.lock:
                hub.served_bytes[path] = hub.served_bytes.get(path, 0) + len(chunk)

    return Handler


def start_hub(address: str = "127.0.0.1", name: Optional[str] = None) -> Tuple[Hub, ThreadingHTTPServer]:
    """A hub listening on ``address``, its URL naming the host ``name`` (default: the address)."""
    hub = Hub()
    server = ThreadingHTTPServer((address, 0), _handler(hub))
    server.daemon_threads = True
    hub.url = "http://%s:%d" % (name or address, server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return hub, server
