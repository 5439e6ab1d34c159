"""Sending to the node: data sets over pynetdicom, fuzz case files byte for byte, garbage
PDUs on raw sockets, and idle TCP connections held open."""
from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from benchmarks.fuzz import FuzzCase, PduCase, association_rq


def _no_delay(event: Any) -> None:
    """EVT_CONN_OPEN: TCP_NODELAY on the sender's socket, or every C-STORE waits ~40 ms
    for a delayed ACK (Nagle)."""
    raw = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _associate(ae: Any, port: int, called_ae: str) -> Any:
    from pynetdicom import evt

    return ae.associate("127.0.0.1", port, ae_title=called_ae, evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])


def send_datasets(port: int, datasets: Sequence[Any], *, on_status: Callable[[int, int | None], None] | None = None,
                  called_ae: str = "AINODE", timeout: float = 30.0) -> dict[str, int | None]:
    """C-STORE ``datasets`` over one pynetdicom association; ``{SOP Instance UID: status}``
    (``None``: no response: the association was aborted, or the peer went away). Stops at
    the first lost association; what was not sent is absent from the result."""
    from pynetdicom import AE

    ae = AE(ae_title="FAULTS")
    ae.maximum_pdu_size = 0
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [str(datasets[0].file_meta.TransferSyntaxUID)])
    statuses: dict[str, int | None] = {}
    assoc = _associate(ae, port, called_ae)
    if not assoc.is_established:
        return statuses
    try:
        for index, ds in enumerate(datasets):
            if not assoc.is_established:
                break
            try:
                status = assoc.send_c_store(ds)
                code = int(status.Status) if "Status" in status else None
            except Exception:
                code = None
            statuses[str(ds.SOPInstanceUID)] = code
            if on_status is not None:
                on_status(index, code)
            if code is None:
                break
    finally:
        if assoc.is_established:
            with contextlib.suppress(Exception):
                assoc.release()
    return statuses


@contextlib.contextmanager
def _raw_file_sending() -> Iterator[None]:
    """pynetdicom sends a file's data set bytes as they are (no decode, no re-encode).

    Its own splitter misplaces the start of a data set shorter than one element header
    (a 1-7 byte body), so the offset is taken from the meta group lengths instead.
    """
    import pynetdicom._config as config
    import pynetdicom.association as association
    from pydicom.filereader import read_file_meta_info

    from benchmarks.fuzz import _meta_end

    def split(path: Path) -> tuple[Any, int]:
        raw = Path(path).read_bytes()
        return read_file_meta_info(path), _meta_end(raw)

    saved = config.STORE_SEND_CHUNKED_DATASET, association.split_dataset
    config.STORE_SEND_CHUNKED_DATASET = True
    association.split_dataset = split  # type: ignore[assignment]
    try:
        yield
    finally:
        config.STORE_SEND_CHUNKED_DATASET, association.split_dataset = saved  # type: ignore[assignment]


class _RawSender:
    """C-STOREs :class:`FuzzCase` files as they are, re-associating as contexts require.

    ``timeout`` bounds the wait for each response. It is twice the node's own network
    timeout: an association the node gives up on still ends as ``no-reply`` (aborted),
    while a slow acknowledgement on a loaded machine is measured (``slowest``), not lost."""

    def __init__(self, port: int, workdir: Path, called_ae: str = "AINODE", timeout: float = 60.0) -> None:
        self.port = port
        self.slowest = 0.0
        """Seconds of the slowest C-STORE that got a status."""
        self.called_ae = called_ae
        self.timeout = timeout
        self.path = workdir / "case.dcm"
        workdir.mkdir(parents=True, exist_ok=True)
        self._assoc: Any = None
        self._contexts: set[tuple[str, str]] = set()

    def _associate(self, needed: tuple[str, str]) -> str | None:
        from pynetdicom import AE

        self.close()
        contexts = self._contexts | {needed}
        if len(contexts) > 120:
            contexts = {needed}
        ae = AE(ae_title="FUZZ")
        ae.maximum_pdu_size = 0
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        by_class: dict[str, list[str]] = {}
        for sop_class, syntax in sorted(contexts):
            by_class.setdefault(sop_class, []).append(syntax)
        for sop_class, syntaxes in by_class.items():
            for syntax in syntaxes:  # one context per syntax: the node picks no other
                ae.add_requested_context(sop_class, [syntax])
        assoc = _associate(ae, self.port, self.called_ae)
        if not assoc.is_established:
            return "association rejected" if assoc.is_rejected else "association not established"
        self._assoc, self._contexts = assoc, contexts
        return None

    def send(self, case: FuzzCase) -> tuple[str, int | None, str]:
        """``(outcome, status, detail)``: outcome ``status`` (a DIMSE status came back),
        ``no-context`` (the node accepted no context for it: not sent), ``no-association``
        or ``no-reply``."""
        needed = (case.sop_class_uid, case.transfer_syntax)
        if self._assoc is None or not self._assoc.is_established or needed not in self._contexts:
            error = self._associate(needed)
            if error:
                return "no-association", None, error
        accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in self._assoc.accepted_contexts}
        if needed not in accepted:
            return "no-context", None, "no accepted presentation context"
        self.path.write_bytes(case.data)
        started = time.monotonic()
        try:
            with _raw_file_sending():
                status = self._assoc.send_c_store(self.path)
        except Exception as exc:
            self.close()
            return "no-reply", None, f"send failed after {time.monotonic() - started:.1f} s: {exc!r}"[:300]
        if "Status" not in status:
            how = "aborted" if self._assoc.is_aborted else "released" if self._assoc.is_released else "open"
            self.close()
            return "no-reply", None, (f"no C-STORE response after {time.monotonic() - started:.1f} s"
                                      f" (association {how}; timeout {self.timeout:.0f} s)")
        self.slowest = max(self.slowest, time.monotonic() - started)
        return "status", int(status.Status), ""

    def close(self) -> None:
        if self._assoc is not None:
            if self._assoc.is_established:
                with contextlib.suppress(Exception):
                    self._assoc.release()
            self._assoc = None


def _send_pdu(port: int, case: PduCase, timeout: float = 2.0) -> str:
    """Send one garbage case on a fresh socket; what came back (``reply 0xNN``, ``closed``, ``silent``)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            if case.associate:
                s.sendall(association_rq())
                header = s.recv(6)
                if not header or header[0] != 0x02:
                    return f"association not accepted ({header[:1].hex() or 'closed'})"
                length = int.from_bytes(header[2:6], "big")
                remaining = length
                while remaining > 0:
                    chunk = s.recv(min(remaining, 65536))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            try:
                s.sendall(case.data)
            except OSError as exc:
                return f"closed while sending ({type(exc).__name__})"
            s.settimeout(0.3)
            try:
                reply = s.recv(6)
            except socket.timeout:
                return "silent"
            except OSError as exc:
                return f"reset ({type(exc).__name__})"
            return f"reply 0x{reply[0]:02X}" if reply else "closed"
    except OSError as exc:
        return f"connect failed ({type(exc).__name__})"


class _IdleConnections:
    """``count`` TCP connections to the node that never say a word, held open."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.sockets: list[socket.socket] = []
        self.failed_to_open = 0

    def __enter__(self) -> "_IdleConnections":
        for _ in range(self.count):
            try:
                self.sockets.append(socket.create_connection(("127.0.0.1", self.port), timeout=5))
            except OSError:
                self.failed_to_open += 1
        return self

    def closed_by_peer(self) -> int:
        """How many of the held connections the node has closed."""
        closed = 0
        for s in self.sockets:
            try:
                s.setblocking(False)
                data = s.recv(1, socket.MSG_PEEK)
                closed += data == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        return closed

    def __exit__(self, *exc: Any) -> None:
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()
