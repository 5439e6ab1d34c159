"""TLS contexts for DICOM (the secure transport connection profile, PS3.15 B.9 / BCP 195).

TLS 1.2 or newer, forward-secret AEAD cipher suites only. The node's listener may ask
clients for a certificate signed by a configured CA; the node's client connections
verify the peer's certificate and host name (against ``ca``, else the system's CAs) and
may present a certificate of their own.
"""
from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "CIPHERS", "HANDSHAKE_TIMEOUT", "TlsHandshakes", "client_context", "handshake_failure", "peer_common_name",
    "server_context",
]

_logger = logging.getLogger("ainode.tls")

CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!eNULL:!MD5:!DSS:!SHA1"
"""TLS 1.2 suites allowed (TLS 1.3 suites are all acceptable and left to OpenSSL)."""


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def server_context(cert: Path, key: Path, ca: Path | None = None, require_client_cert: bool = False) -> ssl.SSLContext:
    """A listener's context: its certificate, and client certificates checked against ``ca``.

    With ``require_client_cert`` a client without a certificate signed by ``ca`` fails the
    handshake; with only ``ca``, a certificate is asked for and checked when presented.
    """
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.load_cert_chain(str(cert), str(key))
    if ca is not None:
        context.load_verify_locations(str(ca))
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ValueError("require_client_cert needs a CA to verify client certificates against")
    return context


def client_context(ca: Path | None = None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client's context: the server's certificate and host name verified; optionally a client certificate."""
    context = _harden(ssl.create_default_context(cafile=str(ca) if ca is not None else None))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context


HANDSHAKE_TIMEOUT = 5.0
"""Seconds a TLS handshake on the node's listener may take before the connection is closed."""


def handshake_failure(error: BaseException) -> str:
    """Why a server-side TLS handshake failed, in words an operator acts on.

    ``no client certificate``, ``untrusted client certificate: unknown CA (...)``,
    ``old protocol (TLS 1.2 or newer required)``, ``no shared cipher``, ``not TLS``
    (plain DICOM on the TLS port), ``client rejected the node's certificate (...)``,
    ``timed out``, ``closed during the handshake``; anything else: ``TLS error: <reason>``.
    """
    if isinstance(error, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        code, message = error.verify_code, str(error.verify_message or "certificate verify failed")
        if code in _UNKNOWN_ISSUER:
            return f"untrusted client certificate: unknown CA ({message})"
        return f"untrusted client certificate: {message}"
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError, BrokenPipeError)):
        return "closed during the handshake"
    reason = str(getattr(error, "reason", None) or "")
    if reason in _REASONS:
        return _REASONS[reason]
    if reason.startswith(("TLSV1_ALERT_", "SSLV3_ALERT_", "TLSV13_ALERT_")):
        alert = reason.split("ALERT_", 1)[1].lower().replace("_", " ")
        return f"client rejected the node's certificate ({alert})" if alert in _CERT_ALERTS \
            else f"client sent alert: {alert}"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {reason or error.__class__.__name__}"
    return f"connection error: {error.__class__.__name__}"


_UNKNOWN_ISSUER = {2, 19, 20, 21}  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT(_LOCALLY), SELF_SIGNED_CERT_IN_CHAIN, ...
_CERT_ALERTS = {"unknown ca", "bad certificate", "certificate unknown", "certificate expired",
                "unsupported certificate", "certificate revoked"}
_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no client certificate",
    "UNSUPPORTED_PROTOCOL": "old protocol (TLS 1.2 or newer required)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "old protocol (TLS 1.2 or newer required)",
    "WRONG_SSL_VERSION": "old protocol (TLS 1.2 or newer required)",
    "VERSION_TOO_LOW": "old protocol (TLS 1.2 or newer required)",
    "NO_SHARED_CIPHER": "no shared cipher",
    "NO_CIPHERS_AVAILABLE": "no shared cipher",
    "NO_SHARED_GROUPS": "no shared key exchange group",
    "WRONG_VERSION_NUMBER": "not TLS",
    "HTTP_REQUEST": "not TLS",
    "PACKET_LENGTH_TOO_LONG": "not TLS",
    "RECORD_LAYER_FAILURE": "not TLS",
    "UNEXPECTED_EOF_WHILE_READING": "closed during the handshake",
    "TLSV1_ALERT_DECODE_ERROR": "client sent alert: decode error",
}


@dataclass
class _Handshake:
    sock: ssl.SSLSocket
    address: Any
    started: float
    progressed: float
    events: int = 0


class TlsHandshakes:
    """The TLS handshakes of a listener's accepted connections, all driven by one thread.

    pynetdicom gives every accepted connection its own threads (an association and its
    reader) before a byte is read, and a client that fails the handshake (no certificate,
    an old protocol, a bad cipher, or nothing at all) would keep them until the network
    timeout. Here a connection gets them only once its handshake has succeeded: the
    handshakes run non-blocking in one thread (:meth:`add` from the accept loop), each
    bounded by ``timeout`` seconds, at most ``max_pending`` at once. When that many are
    pending, :meth:`add` (the accept loop) waits, and new connections wait in the kernel's
    backlog, until one ends, or until one has made no progress for ``idle_limit`` seconds
    and is closed for them: a storm of failing handshakes delays a good client by
    milliseconds instead of closing it, and silent connections cannot hold the listener for
    longer than ``idle_limit`` each. ``ready(sock, address)`` gets each connection whose handshake
    succeeded (blocking again); ``failed(address, reason, client_cert, seconds)`` each one
    that failed (:func:`handshake_failure`), the socket already closed.
    """

    def __init__(self, context: ssl.SSLContext, timeout: float, max_pending: int,
                 ready: Callable[[ssl.SSLSocket, Any], None],
                 failed: Callable[[Any, str, "str | None", float], None], name: str = "TlsHandshakes",
                 idle_limit: float = 1.0) -> None:
        if timeout <= 0 or max_pending < 1:
            raise ValueError("timeout must be > 0 and max_pending >= 1")
        self._context = context
        self._timeout = float(timeout)
        self._max_pending = max_pending
        self._idle_limit = min(idle_limit, self._timeout / 2)
        self._ready = ready
        self._failed = failed
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._count = 0  # handed in and not yet ended
        self._waiting = False  # add() waits for room
        self._incoming: list[_Handshake] = []
        self._pending: dict[int, _Handshake] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def pending(self) -> int:
        """Handshakes in progress (those handed in and not yet picked up count too)."""
        with self._lock:
            return self._count

    def add(self, sock: socket.socket, address: Any) -> None:
        """Take an accepted TCP connection; its handshake starts in the handshake thread."""
        try:
            sock.setblocking(False)
            wrapped = self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError as error:
            _close(sock)
            self._failed(address, handshake_failure(error), None, 0.0)
            return
        with self._lock:
            while self._count >= self._max_pending and not self._stopped:
                self._waiting = True
                self._wake()  # the handshake thread closes an idle one if there is one
                self._room.wait(0.1)
            self._waiting = False
            if self._stopped:
                _close(wrapped)
                return
            now = time.monotonic()
            self._incoming.append(_Handshake(wrapped, address, now, now))
            self._count += 1
        self._wake()

    def close(self) -> None:
        """Stop the thread and close every connection still handshaking (not reported)."""
        with self._lock:
            self._stopped = True
            self._room.notify_all()
        self._wake()
        self._thread.join(timeout=5)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already woken (buffer full) or closed

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    stopped, incoming, self._incoming = self._stopped, self._incoming, []
                    waiting = self._waiting
                if stopped:
                    for handshake in [*self._pending.values(), *incoming]:
                        _close(handshake.sock)
                    self._pending.clear()
                    return
                for handshake in incoming:
                    self._start(handshake)
                now = time.monotonic()
                deadline = min((h.started + self._timeout for h in self._pending.values()), default=now + 1.0)
                if waiting:
                    self._close_idle(now)
                    deadline = min(deadline, now + 0.05)
                for key, _ in self._selector.select(timeout=max(0.0, min(deadline - now, 1.0))):
                    if key.data is None:
                        _drain(self._wake_r)
                    elif key.fd in self._pending:
                        self._step(self._pending[key.fd])
                now = time.monotonic()
                for handshake in [h for h in self._pending.values() if now - h.started >= self._timeout]:
                    self._fail(handshake, f"timed out ({self._timeout:g} s)")
        finally:
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _start(self, handshake: _Handshake) -> None:
        fd = handshake.sock.fileno()
        self._pending[fd] = handshake
        self._selector.register(handshake.sock, selectors.EVENT_READ, fd)
        if _has_data(handshake.sock):  # the client's hello is there already
            self._step(handshake)

    def _close_idle(self, now: float) -> None:
        """Room for a new connection: close the handshake idle longest, if idle ``idle_limit`` already."""
        idlest = min(self._pending.values(), key=lambda h: h.progressed, default=None)
        if idlest is not None and now - idlest.progressed >= self._idle_limit:
            self._fail(idlest, f"dropped: idle {now - idlest.progressed:.1f} s while {self._max_pending} "
                               "handshakes were pending")

    def _step(self, handshake: _Handshake) -> None:
        """Advance a handshake whose socket is ready (data arrived, or room to write)."""
        handshake.events += 1
        handshake.progressed = time.monotonic()
        sock = handshake.sock
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(sock, selectors.EVENT_READ, sock.fileno())
            return
        except ssl.SSLWantWriteError:
            self._selector.modify(sock, selectors.EVENT_WRITE, sock.fileno())
            return
        except (OSError, ValueError) as error:
            self._fail(handshake, handshake_failure(error))
            return
        self._forget(handshake)
        try:
            sock.setblocking(True)
            self._ready(sock, handshake.address)
        except Exception:  # noqa: BLE001 - the listener must outlive one connection
            _logger.exception("TLS connection could not be handed over")
            _close(sock)

    def _fail(self, handshake: _Handshake, reason: str) -> None:
        client_cert = peer_common_name(handshake.sock)
        self._forget(handshake)
        _close(handshake.sock)
        try:
            self._failed(handshake.address, reason, client_cert, time.monotonic() - handshake.started)
        except Exception:  # noqa: BLE001
            _logger.exception("TLS handshake failure could not be reported")

    def _forget(self, handshake: _Handshake) -> None:
        for fd, pending in list(self._pending.items()):
            if pending is handshake:
                del self._pending[fd]
                try:
                    self._selector.unregister(fd)
                except (KeyError, ValueError):
                    pass
                with self._lock:
                    self._count -= 1
                    self._room.notify()


def _has_data(sock: socket.socket) -> bool:
    try:
        return bool(socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True  # reset or closed: the handshake step reports it


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except (BlockingIOError, OSError):
        pass


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def peer_common_name(connection: Any) -> str | None:
    """The subject common name of the certificate the TLS peer presented, ``None`` without one.

    ``connection``: an ``ssl.SSLSocket``, or an object holding one as ``.socket`` (pynetdicom's
    ``AssociationSocket``). Only a certificate the handshake verified is reported (Python
    returns no subject for an unverified one).
    """
    sock = connection if isinstance(connection, ssl.SSLSocket) else getattr(connection, "socket", None)
    if not isinstance(sock, ssl.SSLSocket):
        return None
    try:
        cert = sock.getpeercert()
    except (OSError, ValueError):
        return None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
