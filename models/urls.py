"""Which addresses the model manager fetches from, and how it follows a redirect.

URLs come from people (a catalogue's URL) and from catalogues (model files), so a request could be aimed at
the machine itself or its network: the app's own port, a router's page, cloud metadata (169.254.169.254).
Only public addresses are fetched, unless the operator allows a private mirror's network
(``allow_private_urls``):

- before a request, the URL's scheme (http, https) and every address its host resolves to
  (``UrlPolicy.check``);
- each redirect hop again; a redirect may go from http to https, never to another scheme, and
  ``Authorization`` and ``Cookie`` stay behind when it leaves the host (``UrlPolicy.opener``);
- while a fetch runs (``with policy.guard():``), every TCP connection its thread opens, against the address
  actually dialled, whichever library opens it (urllib here, httpx inside huggingface_hub, requests inside
  gdown): a redirect a library follows by itself and a name that resolves elsewhere the second time (DNS
  rebinding) are refused too. This is the interpreter's audit event ``socket.connect`` (a hook installed
  once; it returns at once in threads that are not fetching).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import sys
import threading
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Iterable, Iterator, List, Optional, Tuple, Union
from urllib.parse import urljoin, urlsplit

from models.errors import UrlRefusedError

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

ADVICE = ("the model manager fetches only public addresses (an operator can allow a private mirror's network "
          "with the allow_private_urls setting)")
CREDENTIALS = ("Authorization", "Cookie")
"""Request headers that never follow a redirect to another host."""


NAT64 = ipaddress.ip_network("64:ff9b::/96")
"""IPv6 addresses a NAT64 gateway turns into the IPv4 address in their last 32 bits."""


def kind_of(address: str) -> Optional[str]:
    """What makes an address not public (``"a loopback address"``), or None for a public one. An IPv6 address
    that carries an IPv4 one (mapped, NAT64, 6to4, Teredo) is judged by the IPv4 address too."""
    try:
        parsed = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return "not an IP address"
    judged: List[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]] = [parsed]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            judged = [parsed.ipv4_mapped]
        if parsed in NAT64:
            judged.append(ipaddress.IPv4Address(int(parsed) & 0xFFFFFFFF))
        judged += [parsed.sixtofour] if parsed.sixtofour else []
        judged += list(parsed.teredo or ())
    for candidate in judged:
        for kind, test in (("a loopback", candidate.is_loopback), ("a link-local", candidate.is_link_local),
                           ("an unspecified", candidate.is_unspecified), ("a multicast", candidate.is_multicast),
                           ("a private", candidate.is_private),
                           ("a reserved (not public)", candidate.is_reserved or not candidate.is_global)):
            if test:
                return kind + " address"
    return None


def shown(url: str) -> str:
    """A URL as an error message shows it: no user, password or query (a signed link's secrets)."""
    parts, port = urlsplit(url), _port_or_none(url)
    host = parts.hostname or ""
    netloc = ("[%s]" % host if ":" in host else host) + (":%d" % port if port else "")
    return ("%s://%s%s" % (parts.scheme, netloc, parts.path))[:300]


def _port_or_none(url: str) -> Optional[int]:
    try:
        return urlsplit(url).port
    except ValueError:
        return None


@dataclass(frozen=True)
class UrlPolicy:
    allowed: Tuple[Network, ...] = ()
    """Networks fetched though not public (a private mirror)."""

    @classmethod
    def allowing(cls, networks: Iterable[str]) -> UrlPolicy:
        """From the operator's setting: addresses or networks, e.g. ``10.0.5.0/24``, ``127.0.0.1``."""
        parsed = []
        for text in networks:
            try:
                parsed.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise ValueError("allow_private_urls: %r is not a network (write an address such as 10.0.5.7 or a "
                                 "network such as 10.0.5.0/24)" % text) from None
        return cls(tuple(parsed))

    def refusal(self, address: str) -> Optional[str]:
        """Why ``address`` is not fetched, or None."""
        kind = kind_of(address)
        if kind is None:
            return None
        try:
            parsed = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return kind
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped
        return None if any(parsed in network for network in self.allowed) else kind

    def check(self, url: str) -> None:
        """Refuse ``url`` unless it is http(s) and every address of its host may be fetched. A name that does not
        resolve passes: the request then fails as offline or a dead link would."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise UrlRefusedError("%s: only http and https URLs are fetched" % shown(url))
        host, port = parts.hostname, _port_or_none(url)
        if not host:
            raise UrlRefusedError("%s: the URL names no host" % shown(url))
        try:
            found = socket.getaddrinfo(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            return
        for *_, address in found:
            kind = self.refusal(str(address[0]))
            if kind is not None:
                literal = str(address[0]) == host
                raise UrlRefusedError("%s: %s; %s" % (shown(url), "%s is %s" % (host, kind) if literal else
                                                      "%s resolves to %s, %s" % (host, address[0], kind), ADVICE))

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Within: every TCP connection this thread opens is checked against the address it dials."""
        _install_hook()
        earlier = getattr(_guarded, "policy", None)
        _guarded.policy = self
        try:
            yield
        finally:
            _guarded.policy = earlier

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib with checked redirects (and the proxies of the environment, as ``urlopen``)."""
        return urllib.request.build_opener(_CheckedRedirects(self))


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy

    def http_error_302(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                       headers: http.client.HTTPMessage) -> Optional[IO[bytes]]:
        location = headers.get("location") or headers.get("uri")
        if location:
            target = urljoin(req.full_url, location)
            before, after = urlsplit(req.full_url).scheme, urlsplit(target).scheme
            try:
                if after != before and (before, after) != ("http", "https"):
                    raise UrlRefusedError("%s redirected to %s: a change from %s to %s is not followed"
                                          % (shown(req.full_url), shown(target) if after in ("http", "https") else after + ":...",
                                             before, after))
                try:
                    self.policy.check(target)
                except UrlRefusedError as exc:
                    raise UrlRefusedError("%s redirected to %s" % (shown(req.full_url), exc)) from None
            except UrlRefusedError:
                fp.close()
                raise
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: http.client.HTTPMessage, newurl: str) -> Optional[urllib.request.Request]:
        request = super().redirect_request(req, fp, code, msg, headers, newurl)
        if request is not None and _origin_host(newurl) != _origin_host(req.full_url):
            for name in CREDENTIALS:
                request.headers.pop(name, None)  # urllib keeps header names capitalised
                request.unredirected_hdrs.pop(name, None)
        return request


def _origin_host(url: str) -> Tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "", _port_or_none(url) or (443 if parts.scheme == "https" else 80))


_guarded = threading.local()
_hook_lock = threading.Lock()
_hook_installed = False


def _install_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_on_audit_event)
            _hook_installed = True


def _on_audit_event(event: str, args: Tuple[Any, ...]) -> None:
    if event != "socket.connect":
        return
    policy: Optional[UrlPolicy] = getattr(_guarded, "policy", None)
    if policy is None or not isinstance(args[1], tuple):  # not fetching, or a Unix socket
        return
    address = str(args[1][0])
    kind = policy.refusal(address)
    if kind is not None:
        args[0].close()  # the library's own clean-up expects an OSError, this is not one
        raise UrlRefusedError("a connection to %s was refused: %s is %s; %s" % (address, address, kind, ADVICE))
