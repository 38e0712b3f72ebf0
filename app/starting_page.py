"""While the app loads (importing Gradio alone takes seconds), its address already answers: a small page
that says so and reloads itself once the app is there. Standard library only: it starts before anything heavy."""

from __future__ import annotations

import http.server
import logging
import socketserver
import threading
from typing import Optional

logger = logging.getLogger(__name__)
MARKER = "voicegen-starting"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Voice workstation: starting</title>
<meta name="%s" content="1"><style>body{font-family:sans-serif;margin:3em;color:#333}</style></head>
<body><h1>Voice workstation</h1><p id="state">Starting&hellip; this page opens the app as soon as it is ready.</p>
<script>
// Poll quietly (a failed fetch while the real server takes over the port is retried, never shown).
async function poll() {
  try {
    const answer = await fetch(location.href, {cache: "no-store"});
    const text = await answer.text();
    if (!text.includes("%s")) { location.reload(); return; }
  } catch (error) {}
  setTimeout(poll, 500);
}
setTimeout(poll, 500);
</script></body></html>""" % (MARKER, MARKER)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Every method gets 503 + Retry-After (scripts: gradio_client, curl, a POST to /v1/audio/speech) and the page
    (a browser); http.server itself would answer 501 to anything but GET."""

    timeout = 10  # a client that stops sending mid-body does not hold a thread for long

    def _answer(self, with_body: bool = True) -> None:
        self._discard_request_body()
        body = PAGE.encode()
        self.send_response(503)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Retry-After", "1")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def _discard_request_body(self) -> None:
        """Read what the client sent: closing with unread bytes resets the connection, and the client would see a
        reset instead of the 503. A body sent in chunks is not read: the connection closes after the answer."""
        try:
            left = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            left = 0
        if self.headers.get("Transfer-Encoding") or left < 0:
            self.close_connection = True
            return
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class StartingPage:
    """``start()`` binds the app's address now; ``stop()`` frees it just before the app binds it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: Optional[_Server] = None

    def start(self) -> bool:
        try:
            self._server = _Server((self.host, self.port), _Handler)
        except OSError as exc:  # the port is taken: the app's own launch says so, clearly
            logger.debug("no starting page on %s:%d: %s", self.host, self.port, exc)
            return False
        threading.Thread(target=self._server.serve_forever, name="starting-page", daemon=True).start()
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
