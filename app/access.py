"""Who may use the app and who may operate it.

Credentials come from ``--auth user:password`` (visible in the process list: prefer the others),
``VOICEGEN_AUTH``, or a file (``--auth-file``/``VOICEGEN_AUTH_FILE``: one ``user:password`` per
line). Passwords are compared as bytes in constant time. The app is *restricted* when it is shared
(``--share``), has credentials, or listens beyond this machine: then only users named in ``--admins``
get the runtime controls and the full status; everyone else sees a short status. Unrestricted (the
default: one person on their own machine) that person is the operator.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Optional

from app.api_keys import ApiKeyStore
from app.errors import UserFacingError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ConfigurationError(ValueError):
    """Credentials or admins that cannot be used; the launcher stops with the message."""


@dataclass(frozen=True)
class Access:
    passwords: Dict[str, bytes] = field(default_factory=dict)
    admins: FrozenSet[str] = frozenset()
    shared: bool = False
    """Shared link or a non-loopback address."""
    keys: Optional[ApiKeyStore] = field(default=None, compare=False)
    """API keys for programs on the HTTP routes (``app.api_keys``)."""

    @property
    def needs_login(self) -> bool:
        """Logins for people (the UI): user:password pairs."""
        return bool(self.passwords)

    @property
    def needs_credentials(self) -> bool:
        """The HTTP routes ask who calls: there are logins, or API keys."""
        return self.needs_login or (self.keys is not None and self.keys.any_active())

    @property
    def restricted(self) -> bool:
        return self.shared or self.needs_login

    def check(self, user: str, password: str) -> bool:
        """Gradio's login and the HTTP routes: both sides as UTF-8 bytes (any password, no TypeError)."""
        expected = self.passwords.get(user)
        given = password.encode("utf-8", "surrogateescape")
        return expected is not None and secrets.compare_digest(given, expected)

    def check_bytes(self, user: bytes, password: bytes) -> bool:
        try:
            name = user.decode("utf-8")
        except UnicodeDecodeError:
            return False
        expected = self.passwords.get(name)
        return expected is not None and secrets.compare_digest(password, expected)

    def is_admin(self, username: Optional[str]) -> bool:
        return not self.restricted or (username is not None and username in self.admins)

    def require_admin(self, username: Optional[str]) -> None:
        if not self.is_admin(username):
            raise UserFacingError("this is for the server's operator: ask them (runtime controls need an admin login)")


def authenticate_header(authorization: bytes, access: Access) -> Optional[str]:
    """The user an ``Authorization`` header proves ("" when the app needs no credentials); None: not authorised.
    HTTP Basic, ``Bearer <API key>`` (the key's owner), or ``Bearer user:password`` (what an OpenAI client sends as its
    api_key); the header's raw bytes."""
    if not access.needs_credentials:
        return ""
    scheme, _, value = authorization.strip().partition(b" ")
    if scheme.lower() == b"bearer" and value.strip().startswith(b"vgk_") and access.keys is not None:
        return access.keys.owner_of(value.strip().decode("latin-1"))
    if scheme.lower() == b"basic":
        try:
            value = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
    elif scheme.lower() != b"bearer":
        return None
    user, sep, password = value.strip().partition(b":") if scheme.lower() == b"bearer" else value.partition(b":")
    if sep and access.check_bytes(user, password):
        return user.decode("utf-8")
    return None


def parse_pairs(text: str, origin: str) -> Dict[str, bytes]:
    pairs: Dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ConfigurationError("%s line %d: expected user:password" % (origin, number))
        pairs[user] = password.encode("utf-8", "surrogateescape")
    return pairs


def load_access(auth: Optional[str], auth_file: Optional[Path], admins: str, share: bool, host: str,
                keys: Optional[ApiKeyStore] = None, insecure_public: bool = False) -> Access:
    """The app's access; a bind beyond this machine with neither logins nor API keys is refused (``ConfigurationError``)
    unless ``insecure_public`` says the operator means it."""
    passwords: Dict[str, bytes] = {}
    if auth:
        passwords.update(parse_pairs(auth.replace(",", "\n"), "--auth"))
    if auth_file:
        try:
            passwords.update(parse_pairs(Path(auth_file).read_text(encoding="utf-8"), str(auth_file)))
        except OSError as exc:
            raise ConfigurationError("cannot read the credentials file %s: %s" % (auth_file, exc.strerror)) from None
    named = frozenset(name.strip() for name in admins.split(",") if name.strip())
    unknown = sorted(named - set(passwords))
    if unknown:
        raise ConfigurationError("admins %s have no credentials (give them with --auth or --auth-file)" % ", ".join(unknown))
    access = Access(passwords, named, share or host not in LOOPBACK_HOSTS, keys)
    if host not in LOOPBACK_HOSTS and not access.needs_credentials and not insecure_public:
        raise ConfigurationError(
            "refusing to serve on %s with neither logins nor API keys: anyone who can reach that address could use this "
            "machine and its models. Give logins (--auth-file, VOICEGEN_AUTH), create an API key "
            "(python3 launcher.py keys create --owner NAME), or pass --insecure-public if that is what you want" % host)
    return access
