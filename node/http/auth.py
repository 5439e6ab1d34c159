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

Cross-site requests (:class:`CrossSiteGuard`, whatever the mode, before anything else):
a state-changing request (any method but GET, HEAD, OPTIONS) that a browser marks as
started by another site is refused with 403 before it is routed: its ``Sec-Fetch-Site`` is
neither ``same-origin`` nor ``none``, or its ``Origin`` (``null`` included) is not the node's
own origin (scheme, host and port of the ``Host`` header). Browsers add both headers to every
POST (fetch and forms) and no page can forge them, so a page the radiologist opens on the
same workstation cannot make a loopback node without a token retry jobs or replay dead
letters, even with a ``text/plain`` body that needs no CORS preflight. A request with
neither header is not a browser's (an API client, ``ainode``, a PACS sending STOW-RS) and
goes on to the authentication below. Behind a reverse proxy the proxy must pass the
browser's ``Host`` on (``proxy_set_header Host $host``), else its ``Origin`` looks foreign.

Browsers: ``/login`` (:mod:`node.http.pages.login`) exchanges the token for a signed session cookie
(:mod:`node.http.sessions`), accepted here in place of the header. Cross-site request forgery:
the cookie is ``SameSite=Strict``, so a browser never sends it with a request started by
another site; and a state-changing request carried by the cookie must also have an
``Origin`` header equal to the node's own origin (not only no foreign one), else 403.
The Origin check covers what SameSite does not: "site" ignores ports and subdomains, so a
page served by another program on the same host is same-site. Browsers send ``Origin``
with every POST (fetch and forms), so no token has to be planted in pages and scripts.
A request with the bearer header needs no Origin: no browser adds that header to a
cross-origin request without the node's consent (CORS, which the node never grants).
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Mapping, Sequence

from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import HttpConfig
from ..logs import log
from .sessions import COOKIE_NAME, SessionSigner

__all__ = ["AccessMode", "AuthError", "BearerAuth", "Credential", "CrossSiteGuard", "cross_site", "is_loopback",
           "same_origin"]

_logger = logging.getLogger("ainode.web")

ALWAYS_OPEN = frozenset({"/login", "/logout"})
"""Paths every policy lets through (they check what they need themselves)."""

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})
"""``Sec-Fetch-Site`` values of a request the node's own pages (or the user, typing) started."""


class AccessMode(StrEnum):
    """Who the API answers, as ``[http]`` configures it.

    token
        A request with the bearer token of ``token_file`` (or a session it opened).
    anonymous
        Anyone (no token configured, and anonymous use allowed).
    closed
        No token configured and anonymous use not allowed: only the open paths answer.
    """

    TOKEN = "token"
    ANONYMOUS = "anonymous"
    CLOSED = "closed"


class Credential(StrEnum):
    """What let a request through; the dependency puts it in ``request.state.credential``.

    open
        Its path is open under every policy (``/login``, ``/logout``, ``[http] open_paths``).
    anonymous
        The node answers anyone.
    bearer
        The request carried the current bearer token.
    session
        The request carried a valid session cookie (a login in the browser).
    """

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
    return origin is not None and _is_own_origin(origin, request.url.scheme, request.headers.get("host", ""))


def cross_site(method: str, headers: Headers | Mapping[str, str], scheme: str) -> str | None:
    """Why a browser started this request from another site (``None``: it did not, or it is safe).

    Only state-changing methods are judged. ``headers`` must be case-insensitive (Starlette's).
    """
    if method.upper() in _SAFE_METHODS:
        return None
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.strip().lower() not in _OWN_FETCH_SITES:
        return f"Sec-Fetch-Site is {fetch_site[:40]!r}"
    origin = headers.get("origin")
    if origin is not None and not _is_own_origin(origin, scheme, headers.get("host", "")):
        return "Origin is another origin"
    return None


def _is_own_origin(origin: str, scheme: str, host: str) -> bool:
    own = f"{scheme}://{host}"
    return hmac.compare_digest(origin.strip().lower().encode("utf-8", "replace"), own.lower().encode("utf-8", "replace"))


class CrossSiteGuard:
    """ASGI middleware: a state-changing request started by another site gets 403, before routing.

    It runs before the route is found and its body read, so every endpoint, those added
    later and the mounted ones included, is covered, and a refused request never reaches a
    handler (see the module's docstring for the rule).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            why = cross_site(scope["method"], headers, scope.get("scheme", "http"))
            if why is not None:
                log(_logger, logging.WARNING, "cross-site request refused", method=scope["method"],
                    path=scope.get("path", "")[:200], reason=why, origin=(headers.get("origin") or "")[:200])
                answer = JSONResponse({"detail": "cross-site request refused"}, status_code=403,
                                      headers={"Cache-Control": "no-store"})
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refused(request: Request, detail: str) -> HTTPException:
    """401 for the API; for a browser loading a page, a redirect to the login page."""
    if request.method == "GET" and "text/html" in request.headers.get("accept", "") and _is_page(request.url.path):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return HTTPException(303, "log in first", headers={"Location": f"/login?next={quote(target, safe='/')}"})
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _is_page(path: str) -> bool:
    return path == "/" or path.startswith("/jobs/") and not path.endswith((".png", ".stl"))
