"""Who may use the HTTP API: a bearer token, as a FastAPI dependency.

Policy (``[http]``):

* ``token_file`` set: every path but ``open_paths`` (``/metrics``, ``/healthz``) and
  ``/login``/``/logout`` needs ``Authorization: Bearer <the file's content>`` or a session
  cookie from ``/login``; the token is compared in constant time,
  re-read when the file changes (it may rotate) and never logged or echoed.
* no ``token_file``: anonymous use is allowed when ``allow_anonymous`` is true, which by
  default it is only when the API listens on a loopback address (the demo); otherwise
  every protected path answers 401 until a token is configured.

A refused request gets 401 with ``WWW-Authenticate: Bearer`` and a body naming no secret;
a browser loading a page (``GET`` asking for HTML) is sent to ``/login`` instead.

Browsers: ``/login`` (:mod:`node.http.pages.login`) exchanges the token for a signed session cookie
(:mod:`node.http.sessions`), accepted here in place of the header. Cross-site request forgery:
the cookie is ``SameSite=Strict``, so a browser never sends it with a request started by
another site; and a state-changing request (any method but GET, HEAD, OPTIONS) carried by
the cookie must also have an ``Origin`` header equal to the node's own origin, else 403.
The Origin check covers what SameSite does not: "site" ignores ports and subdomains, so a
page served by another program on the same host is same-site. Browsers send ``Origin``
with every POST (fetch and forms), so no token has to be planted in pages and scripts.
A request with the bearer header needs no such check: no browser adds that header to a
cross-origin request without the node's consent (CORS, which the node never grants).
"""
from __future__ import annotations

import hmac
import ipaddress
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Sequence

from urllib.parse import quote

from fastapi import HTTPException, Request

from ..config import HttpConfig
from .sessions import COOKIE_NAME, SessionSigner

__all__ = ["AccessMode", "AuthError", "BearerAuth", "Credential", "is_loopback", "same_origin"]

ALWAYS_OPEN = frozenset({"/login", "/logout"})
"""Paths every policy lets through (they check what they need themselves)."""

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AccessMode(StrEnum):
    TOKEN = "token"
    ANONYMOUS = "anonymous"
    CLOSED = "closed"
    """No token configured and anonymous use not allowed: only the open paths answer."""


class Credential(StrEnum):
    """What let a request through; the dependency puts it in ``request.state.credential``."""

    OPEN = "open"
    ANONYMOUS = "anonymous"
    BEARER = "bearer"
    SESSION = "session"


class AuthError(Exception):
    """The token file cannot be used; the message names the file, never its content."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Token:
    value: bytes
    mtime_ns: int


class BearerAuth:
    """The API's gatekeeper; :meth:`__call__` is the FastAPI dependency."""

    def __init__(self, mode: AccessMode, token_file: Path | None = None,
                 open_paths: Sequence[str] = ("/metrics", "/healthz")) -> None:
        if (mode == AccessMode.TOKEN) != (token_file is not None):
            raise ValueError("a token file goes with, and only with, AccessMode.TOKEN")
        self.mode = mode
        self.open_paths = frozenset(open_paths)
        self._token_file = token_file
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self.sessions: SessionSigner | None = None
        if token_file is not None:
            self._current_token()  # fail at start, not at the first request
            self.sessions = SessionSigner(self._current_token)

    @classmethod
    def from_config(cls, http: HttpConfig, host: str) -> "BearerAuth":
        """The policy of ``[http]`` for an API listening on ``host``."""
        if http.token_file is not None:
            return cls(AccessMode.TOKEN, http.token_file, http.open_paths)
        anonymous = is_loopback(host) if http.allow_anonymous is None else http.allow_anonymous
        return cls(AccessMode.ANONYMOUS if anonymous else AccessMode.CLOSED, None, http.open_paths)

    def __call__(self, request: Request) -> None:
        """Let the request through (noting how in ``request.state.credential``), or raise 401, 403 or 303."""
        path = request.url.path
        if path in self.open_paths or path in ALWAYS_OPEN:
            request.state.credential = Credential.OPEN
            return
        if self.mode == AccessMode.ANONYMOUS:
            request.state.credential = Credential.ANONYMOUS
            return
        if self.mode == AccessMode.CLOSED:
            raise _refused(request, "this node's API needs a token: set [http] token_file")
        header = request.headers.get("authorization")
        if header is None and self.sessions is not None and COOKIE_NAME in request.cookies:
            if not self.sessions.valid(request.cookies[COOKIE_NAME]):
                raise _refused(request, "the session has expired or is not valid: log in again")
            if request.method not in _SAFE_METHODS and not same_origin(request):
                raise HTTPException(403, "cross-origin request refused")
            request.state.credential = Credential.SESSION
            return
        scheme, _, presented = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _refused(request, "a bearer token is required")
        if not self.token_matches(presented):
            raise _refused(request, "the bearer token is not valid")
        request.state.credential = Credential.BEARER

    def token_matches(self, presented: str) -> bool:
        """Whether ``presented`` is the current token (constant time; ``False`` without a readable token)."""
        if self.mode != AccessMode.TOKEN:
            return False
        try:
            token = self._current_token()
        except AuthError:
            return False
        return hmac.compare_digest(presented.strip().encode("utf-8"), token)

    def _current_token(self) -> bytes:
        assert self._token_file is not None
        try:
            mtime = self._token_file.stat().st_mtime_ns
            with self._lock:
                if self._token is None or self._token.mtime_ns != mtime:
                    value = self._token_file.read_text(encoding="utf-8").strip().encode("utf-8")
                    if not value:
                        raise AuthError(f"[http] token_file {str(self._token_file)!r} is empty")
                    self._token = _Token(value, mtime)
                return self._token.value
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthError(f"[http] token_file {str(self._token_file)!r} cannot be read: "
                            f"{exc.__class__.__name__}") from None


def same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` header names the node itself (scheme, host and port)."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin is not None and hmac.compare_digest(origin.lower().encode(), own.lower().encode())


def _refused(request: Request, detail: str) -> HTTPException:
    """401 for the API; for a browser loading a page, a redirect to the login page."""
    if request.method == "GET" and "text/html" in request.headers.get("accept", "") and _is_page(request.url.path):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return HTTPException(303, "log in first", headers={"Location": f"/login?next={quote(target, safe='/')}"})
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _is_page(path: str) -> bool:
    return path == "/" or path.startswith("/jobs/") and not path.endswith((".png", ".stl"))
