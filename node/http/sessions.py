"""Signed session cookies for the pages: what a browser carries instead of the bearer token.

A browser cannot add ``Authorization: Bearer`` to a page load, so ``/login`` takes the
token once and answers with a session cookie. The cookie is
``<expires>.<nonce>.<signature>``: an expiry time, 16 random bytes, and an HMAC-SHA256
of both under a key derived from the token (HMAC of a fixed label keyed by the token).
It holds nothing secret and does not contain the token; the token cannot be recovered from it.
Rotating the token file changes the key, which ends every session at once; ``/logout``
revokes one session (in memory, until it would have expired anyway).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from typing import Callable

__all__ = ["COOKIE_NAME", "SESSION_SECONDS", "SessionSigner"]

COOKIE_NAME = "ainode_session"
SESSION_SECONDS = 12 * 3600
"""How long a session lasts after login (12 h: one shift)."""

_LABEL = b"ainode session cookie v1"


class SessionSigner:
    """Issues and checks session cookies under a key derived from the current token.

    Parameters
    ----------
    token
        Returns the current token (it may rotate; the key follows it).
    lifetime
        Seconds a session lasts.
    clock
        Wall-clock seconds (tests pass their own).
    """

    def __init__(self, token: Callable[[], bytes], lifetime: float = SESSION_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._token = token
        self.lifetime = lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._revoked: dict[str, float] = {}

    def issue(self) -> str:
        """A new session cookie value, valid for :attr:`lifetime` seconds."""
        payload = f"{int(self._clock() + self.lifetime)}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._sign(payload)}"

    def valid(self, cookie: str | None) -> bool:
        """Whether ``cookie`` was issued under the current token, has not expired and was not revoked."""
        payload = self._payload(cookie)
        return payload is not None and payload not in self._revoked_now()

    def revoke(self, cookie: str | None) -> None:
        """End the session of ``cookie`` (a logout); an invalid cookie is ignored."""
        payload = self._payload(cookie)
        if payload is not None:
            with self._lock:
                self._revoked[payload] = float(payload.split(".", 1)[0])

    def _payload(self, cookie: str | None) -> str | None:
        if not cookie or cookie.count(".") != 2:
            return None
        payload, _, signature = cookie.rpartition(".")
        expires = payload.split(".", 1)[0]
        if not expires.isdigit() or int(expires) <= self._clock():
            return None
        try:
            expected = self._sign(payload)
        except Exception:  # the token file cannot be read, or the cookie is not ASCII: not valid
            return None
        return payload if hmac.compare_digest(signature.encode(), expected.encode()) else None

    def _sign(self, payload: str) -> str:
        key = hmac.new(self._token(), _LABEL, hashlib.sha256).digest()
        mac = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def _revoked_now(self) -> set[str]:
        now = self._clock()
        with self._lock:
            for payload in [p for p, expires in self._revoked.items() if expires <= now]:
                del self._revoked[payload]
            return set(self._revoked)
