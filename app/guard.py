"""The app's front door, an ASGI middleware around Gradio and the HTTP routes: it decides on the request's head
alone, before any body is read or parsed.

* Host: loopback names, IP addresses and ``trusted_hosts`` (and Gradio's share domain with ``--share``); any
  other name is a page that reached us through DNS rebinding: 421.
* Origin: a state-changing request sent by a page of another site (its Origin is not this app's) is refused: 403.
* Failed logins (HTTP Basic, Bearer, Gradio's login form) are counted per client address; past the limit that
  address is refused (429 with Retry-After) for the rest of the window.
* ``/v1/*``: credentials are checked (401) and the body's declared size (413) before the route reads a byte, and
  a body sent without a length is counted as it streams (413 at the limit)."""

from __future__ import annotations

import collections
import ipaddress
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Deque, Dict, FrozenSet, Optional, Tuple
from urllib.parse import urlsplit

from app.access import Access, authenticate_header
from app.rate_limits import RateLimits

Scope = Dict[str, Any]
Message = Dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SHARE_SUFFIX = ".gradio.live"


def host_name(value: str) -> str:
    """The name part of a Host header (no port; IPv6 without brackets), lower-cased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostPolicy:
    trusted: FrozenSet[str] = frozenset()
    share: bool = False

    def allows(self, host_header: str) -> bool:
        name = host_name(host_header)
        if not name:
            return True  # HTTP/1.0 without Host: nothing a browser sends
        return (is_ip(name) or name in LOOPBACK_NAMES or name.endswith(".localhost") or name in self.trusted
                or (self.share and name.endswith(SHARE_SUFFIX)))


class LoginThrottle:
    """Failed logins per address within a sliding window."""

    def __init__(self, limit: int, window_s: float, max_addresses: int = 10000) -> None:
        self.limit, self.window_s, self.max_addresses = limit, window_s, max_addresses
        self._failures: Dict[str, Deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> Deque[float]:
        failures = self._failures.get(address, collections.deque())
        while failures and now - failures[0] > self.window_s:
            failures.popleft()
        return failures

    def retry_after_s(self, address: str) -> float:
        """Seconds this address must wait before it may try again (0: it may)."""
        if self.limit <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            failures = self._recent(address, now)
            if len(failures) < self.limit:
                return 0.0
            return max(1.0, self.window_s - (now - failures[-self.limit]))

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            if address not in self._failures and len(self._failures) >= self.max_addresses:
                for stale in [a for a, f in self._failures.items() if not f or now - f[-1] > self.window_s]:
                    del self._failures[stale]
                if len(self._failures) >= self.max_addresses:
                    self._failures.pop(next(iter(self._failures)))
            failures = self._recent(address, now)
            failures.append(now)
            self._failures[address] = failures


class _BodyTooLarge(Exception):
    pass


def _headers(scope: Scope) -> Dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers") or []}


async def _answer(send: Send, status: int, message: str, extra: Tuple[Tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps({"error": {"message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: ASGIApp, access: Access, hosts: HostPolicy, throttle: LoginThrottle, max_body_bytes: int,
                 guarded_prefix: str = "/v1/", on_refuse: Callable[[str], None] = lambda reason: None,
                 rate_limits: Optional[RateLimits] = None) -> None:
        """``on_refuse``: told the reason of each refusal (the app's metrics). ``rate_limits``: per caller and address."""
        self.app, self.access, self.hosts, self.throttle = app, access, hosts, throttle
        self.rate_limits = rate_limits
        self.max_body_bytes, self.guarded_prefix, self.on_refuse = max_body_bytes, guarded_prefix, on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.hosts.allows(host):
            self.on_refuse("host")
            if scope["type"] == "http":
                await _answer(send, 421, "this app does not answer to the host name %r (an operator may add it to trusted_hosts)"
                              % host_name(host)[:100])
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        if (scope["type"] == "websocket" or scope.get("method") in STATE_CHANGING) and self._cross_site(headers, host):
            origin = headers.get(b"origin", b"").decode("latin-1") or "another site"
            self.on_refuse("cross_site")
            if scope["type"] == "http":
                await _answer(send, 403, "a page of another site (%s) may not use this app" % origin[:100])
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("", 0))[0]
        path = scope.get("path", "")
        is_login = scope.get("method") == "POST" and path.rstrip("/").endswith("/login")
        guarded = path.startswith(self.guarded_prefix)
        if (guarded and self.access.needs_credentials) or is_login:
            wait_s = self.throttle.retry_after_s(address)
            if wait_s:
                self.on_refuse("login_throttle")
                await _answer(send, 429, "too many failed logins from this address; try again in %.0f s" % wait_s,
                              ((b"retry-after", b"%d" % int(wait_s + 0.999)),))
                return
        if guarded:
            user = authenticate_header(headers.get(b"authorization", b""), self.access)
            if user is None:
                self.throttle.failed(address)
                self.on_refuse("credentials")
                await _answer(send, 401,
                              "this server needs credentials: an API key ('Bearer vgk_...'), HTTP Basic, or 'Bearer user:password'",
                              ((b"www-authenticate", b'Basic realm="voice workstation"'),))
                return
            scope.setdefault("state", {})["user"] = user
            # on a shared server only: one person on their own machine may poll as fast as their script likes
            limited = self.rate_limits is not None and self.access.restricted
            wait_s = self.rate_limits.retry_after_s(user, address) if limited and self.rate_limits is not None else 0.0
            if wait_s:
                self.on_refuse("rate_limit")
                await _answer(send, 429, "too many requests from this caller or address; try again in %.0f s" % max(1.0, wait_s),
                              ((b"retry-after", b"%d" % int(wait_s + 0.999)),))
                return
            declared = headers.get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
                self.on_refuse("too_large")
                await _answer(send, 413, "the request is over this server's %d MB limit" % (self.max_body_bytes >> 20))
                return
            await self._counted(scope, receive, send)
            return
        if is_login:
            await self._watch_login(scope, receive, send, address)
            return
        await self.app(scope, receive, send)

    def _cross_site(self, headers: Dict[bytes, bytes], host: str) -> bool:
        """Sent by a page of another site: its Origin is neither this app's address (the Host it was asked under) nor
        a name the operator trusts (a proxy in front may rewrite Host); ``null`` (sandboxed frames, data: pages) and
        a browser's own ``Sec-Fetch-Site: cross-site`` count as another site. Scripts send no Origin."""
        origin = headers.get(b"origin", b"").decode("latin-1").strip()
        if not origin:
            return headers.get(b"sec-fetch-site", b"") == b"cross-site"
        if origin == "null":
            return True
        netloc = urlsplit(origin).netloc.lower()
        if netloc == host.strip().lower():
            return False
        name = host_name(netloc)
        return not (name in self.hosts.trusted or (self.hosts.share and name.endswith(SHARE_SUFFIX)))

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the route with its body counted as it streams: past the limit, reading stops and the answer is 413
        (whatever the route made of the cut-off body: FastAPI turns a failed read into its own 400)."""
        received, over, answered = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    over = True
                    raise _BodyTooLarge()
            return message

        async def watching_send(message: Message) -> None:
            nonlocal answered
            if over:
                if not answered:
                    answered = True
                    await self._too_large(send)
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _BodyTooLarge:
            pass
        if over and not answered:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        await _answer(send, 413, "the request is over this server's %d MB limit" % (self.max_body_bytes >> 20))

    async def _watch_login(self, scope: Scope, receive: Receive, send: Send, address: str) -> None:
        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                self.throttle.failed(address)
            await send(message)

        await self.app(scope, receive, watching_send)
