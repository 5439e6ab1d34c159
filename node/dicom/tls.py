"""TLS contexts for DICOM (the secure transport connection profile, PS3.15 B.9 / BCP 195).

TLS 1.2 or newer, forward-secret AEAD cipher suites only. The node's listener may ask
clients for a certificate signed by a configured CA; the node's client connections
verify the peer's certificate and host name (against ``ca``, else the system's CAs) and
may present a certificate of their own.
"""
from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

__all__ = ["CIPHERS", "client_context", "defer_server_handshake", "peer_common_name", "server_context"]

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


def defer_server_handshake(server: Any, timeout: float) -> None:
    """Have a pynetdicom ``AssociationServer`` do each TLS handshake off its accept loop.

    pynetdicom wraps an accepted socket in its accept thread, handshake included: one
    client that connects and says nothing would stop the listener. Here the accept
    thread only wraps; the handshake happens in the connection's own thread on its first
    read, under ``timeout``, and a client that fails it (no or a bad certificate) is
    disconnected without an association.
    """
    context: ssl.SSLContext = server.ssl_context

    def get_request() -> tuple[socket.socket, Any]:
        client, address = server.socket.accept()
        client.settimeout(timeout)
        return context.wrap_socket(client, server_side=True, do_handshake_on_connect=False), address

    server.get_request = get_request


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
