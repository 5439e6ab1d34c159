"""Known peers: which calling AE titles may associate, from which hosts, over which transport.

Each ``[[peers]]`` entry binds a calling AE title to an address or a CIDR network and,
with ``tls = true``, to the DICOM TLS listener, and with ``cert_cn`` to the client
certificate whose subject common name it names (the certificate itself is verified by
the TLS handshake against ``[dicom_tls] ca``; this binds it to the title, so that one
modality's certificate cannot send under another's title). A title that is listed is only accepted
from a matching entry, whatever ``accept_unknown_peers`` says; a title that is not listed
is accepted only with ``accept_unknown_peers = true`` (the demo default; off in
production, as Orthanc's ``DicomAlwaysAllowStore = false`` with host checks).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Sequence

from ..config import PeerConfig

__all__ = ["PeerPolicy"]


@dataclass(frozen=True)
class _Entry:
    ae_title: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    tls: bool
    cert_cn: str | None


class PeerPolicy:
    """Judges a calling AE title, the peer's address and whether it came over TLS."""

    def __init__(self, peers: Sequence[PeerConfig] = (), accept_unknown: bool = True) -> None:
        self.accept_unknown = accept_unknown
        self._entries = tuple(_Entry(p.ae_title.strip(" "), ipaddress.ip_network(p.host, strict=False), p.tls,
                                     p.cert_cn) for p in peers)

    def problem(self, calling_ae: str, address: str | None, tls: bool, client_cn: str | None = None) -> str | None:
        """Why this peer is refused (no PHI: the reason names no title or address); ``None`` if accepted.

        ``client_cn``: the subject common name of the verified client certificate, if one was presented.
        """
        title = calling_ae.strip(" ")
        entries = [e for e in self._entries if e.ae_title == title]
        if not entries:
            return None if self.accept_unknown else "AE title not listed in [[peers]]"
        peer = _address(address)
        if peer is None:
            return "peer address unknown"
        by_host = [e for e in entries if peer.version == e.network.version and peer in e.network]
        if not by_host:
            return "host does not match the AE title's [[peers]] entry"
        by_transport = [e for e in by_host if tls or not e.tls]
        if not by_transport:
            return "AE title must connect over DICOM TLS"
        if not any(e.cert_cn is None or (tls and e.cert_cn == client_cn) for e in by_transport):
            return ("no client certificate, and the AE title's [[peers]] entry names one" if client_cn is None
                    else "client certificate does not match the AE title's [[peers]] entry")
        return None


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
