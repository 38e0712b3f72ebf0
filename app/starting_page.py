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
    def do_GET(self) -> None:
        body = PAGE.encode()
        # 503 + Retry-After for scripts (gradio_client, curl) that ask before the app is up; a browser shows the page
        self.send_response(503)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Retry-After", "1")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
