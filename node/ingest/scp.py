"""pynetdicom plumbing of the DICOM listener: the AE with every storage class, listeners
that share a port with the node's other processes, and presentation contexts shared by
every association instead of copied for each."""
from __future__ import annotations

import socket
import ssl
import threading

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer
from pynetdicom.utils import make_target

from .accept import ACCEPTED_TRANSFER_SYNTAXES

__all__ = ["MAX_PDU_BYTES", "SharedContexts", "SharedPortServer", "make_ae", "start_shared_server"]

MAX_PDU_BYTES = 1 << 20
"""The largest P-DATA-TF PDU the node asks senders for: what one read of theirs holds in memory."""
_PYNETDICOM_NO_LIMIT = 1 << 20


class SharedContexts(list):  # type: ignore[type-arg]
    """The listener's supported presentation contexts, shared by its associations.

    pynetdicom deep-copies the server's contexts for every connection it accepts: with
    every storage class in every decodable transfer syntax that is ~30 ms of GIL-bound
    work per connection, so a burst of idle connections delays real modalities by
    seconds. Negotiation only reads the acceptor's contexts, so a shallow copy is safe.
    """

    def __deepcopy__(self, memo: dict[int, object]) -> list:  # type: ignore[type-arg]
        return list(self)


class SharedPortServer(ThreadedAssociationServer):
    """A listener bound with ``SO_REUSEPORT``, beside the node's other listener processes.

    pynetdicom's ``server_bind`` replaces socketserver's (which would honour
    ``allow_reuse_port``), so the option is set here, before it binds.
    """

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def start_shared_server(ae: AE, address: tuple[str, int], handlers: list, context: ssl.SSLContext | None,
                         ) -> ThreadedAssociationServer:
    """``ae.start_server(address, block=False, ...)`` with a :class:`SharedPortServer`."""
    server = ae.make_server(address, evt_handlers=handlers, ssl_context=context, server_class=SharedPortServer)
    threading.Thread(target=make_target(server.serve_forever), name="AcceptorServer-shared", daemon=True).start()
    ae._servers.append(server)  # so that ae.shutdown() stops it, as start_server's do
    return server


def make_ae(ae_title: str, network_timeout: float, acse_timeout: float, dimse_timeout: float) -> AE:
    """The AE, with every storage class and Verification.

    pynetdicom's own association limit counts every connection thread, also those that
    never asked for an association or were dropped and wait out the handshake timeout; the
    node counts associations and pending connections itself (:class:`ConnectionGate`),
    so pynetdicom's limit is lifted out of the way.
    """
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = MAX_PDU_BYTES
    ae.maximum_associations = _PYNETDICOM_NO_LIMIT
    ae.network_timeout = network_timeout
    ae.acse_timeout = acse_timeout
    ae.dimse_timeout = dimse_timeout
    ae.add_supported_context(Verification, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
    return ae
