"""Who may use the HTTP API: a bearer token, as a FastAPI dependency.

Policy (``[http]``):

* ``token_file`` set: every path but ``open_paths`` (``/metrics``, ``/healthz``) needs
  ``Authorization: Bearer <the file's content>``; the token is compared in constant time,
  re-read when the file changes (it may rotate) and never logged or echoed.
* no ``token_file``: anonymous use is allowed when ``allow_anonymous`` is true, which by
  default it is only when the API listens on a loopback address (the demo); otherwise
  every protected path answers 401 until a token is configured.

A refused request gets 401 with ``WWW-Authenticate: Bearer`` and a body naming no secret.
"""
from __future__ import annotations

import hmac
import ipaddress
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Sequence

from fastapi import HTTPException, Request

from .config import HttpConfig

__all__ = ["AccessMode", "AuthError", "BearerAuth", "is_loopback"]


class AccessMode(StrEnum):
    TOKEN = "token"
    ANONYMOUS = "anonymous"
    CLOSED = "closed"
    """No token configured and anonymous use not allowed: only the open paths answer."""


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
        if token_file is not None:
            self._current_token()  # fail at start, not at the first request

    @classmethod
    def from_config(cls, http: HttpConfig, host: str) -> "BearerAuth":
        """The policy of ``[http]`` for an API listening on ``host``."""
        if http.token_file is not None:
            return cls(AccessMode.TOKEN, http.token_file, http.open_paths)
        anonymous = is_loopback(host) if http.allow_anonymous is None else http.allow_anonymous
        return cls(AccessMode.ANONYMOUS if anonymous else AccessMode.CLOSED, None, http.open_paths)

    def __call__(self, request: Request) -> None:
        """Let the request through, or raise 401."""
        if request.url.path in self.open_paths or self.mode == AccessMode.ANONYMOUS:
            return
        if self.mode == AccessMode.CLOSED:
            raise _unauthorized("this node's API needs a token: set [http] token_file")
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _unauthorized("a bearer token is required")
        try:
            token = self._current_token()
        except AuthError:
            raise _unauthorized("the node cannot read its token file") from None
        if not hmac.compare_digest(presented.strip().encode("utf-8"), token):
            raise _unauthorized("the bearer token is not valid")

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


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})
