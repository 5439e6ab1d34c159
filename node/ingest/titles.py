"""Calling and called AE titles, judged at A-ASSOCIATE-RQ before anything else is.

A title is what PS3.5 allows for the AE VR, 1 to 16 characters of the default
repertoire without backslash or control characters, not all spaces (leading and
trailing spaces are padding, PS3.8 §9.3.2), and the node narrows the calling title
further to letters, digits, space and ``- _ . : @ # +``: a title such as
``../../etc/passwd`` is valid PS3.5 but no modality needs one, and it is recorded
with every instance, shown by the API and read by whoever looks at either. The called
title must be the node's own, compared case-sensitively without padding. Either
failure is answered with A-ASSOCIATE-RJ, rejected-permanent, service-user, reason 3
(calling AE title not recognised) or 7 (called AE title not recognised): the sender's
operator reads why from its log; nothing of the association is kept.

pynetdicom decodes the titles itself and, on a control character, a backslash or a
title of spaces, gives up on the whole A-ASSOCIATE-RQ and aborts: the sender learns
nothing. :meth:`TitleScreen.watch` therefore judges the raw 16-byte fields before
pynetdicom decodes them, and hands pynetdicom a placeholder for a title it refuses,
so that every such request reaches the node's ``EVT_REQUESTED`` handler and is
rejected with the reason.

A title that is well formed is then judged against the known peers (:mod:`.peers`):
an unlisted title (with ``accept_unknown_peers = false``), a listed one from another
host, one bound to TLS that came over plain TCP, or one bound to a client certificate
(``cert_cn``) that came with another is rejected with reason 3 too, labelled
``unknown_peer``.
"""
from __future__ import annotations

import string
import threading
from dataclasses import dataclass

from pynetdicom.association import Association

from ..dicom.tls import peer_common_name
from .peers import PeerPolicy

__all__ = [
    "AE_TITLE_MAX_LENGTH",
    "CALLED_AE_NOT_RECOGNISED",
    "CALLING_AE_NOT_RECOGNISED",
    "TitleRejection",
    "TitleScreen",
    "UNKNOWN_PEER",
    "ae_title_problem",
    "printable_title",
]

CALLING_AE_NOT_RECOGNISED = 0x03
"""A-ASSOCIATE-RJ reason (result source service-user): calling AE title not recognised."""

CALLED_AE_NOT_RECOGNISED = 0x07
"""A-ASSOCIATE-RJ reason (result source service-user): called AE title not recognised."""

UNKNOWN_PEER = "unknown_peer"
"""The ``ainode_associations_rejected_total`` reason of a title refused by the known peers."""

AE_TITLE_MAX_LENGTH = 16
"""An AE title is at most 16 characters (PS3.5 Table 6.2-1), padding aside."""

_CALLING_TITLE_CHARACTERS = frozenset(string.ascii_letters + string.digits + " -_.:@#+")
_A_ASSOCIATE_RQ = 0x01
_CALLED_FIELD = slice(10, 26)
_CALLING_FIELD = slice(26, 42)
_PLACEHOLDER = b"REFUSED".ljust(AE_TITLE_MAX_LENGTH)


def ae_title_problem(title: str | bytes, *, restricted: bool = True) -> str | None:
    """Why ``title`` is not an AE title the node admits; ``None`` when it is one.

    Parameters
    ----------
    title
        The title as decoded, or the raw bytes of an A-ASSOCIATE-RQ field (space padded).
    restricted
        Also require the node's narrower character set (letters, digits, space and
        ``-_.:@#+``); without it, only PS3.5's rules for the AE VR apply.
    """
    if isinstance(title, bytes):
        outside = [b for b in title if not 0x20 <= b <= 0x7E]
        if outside:
            kind = "control character" if outside[0] < 0x20 or outside[0] == 0x7F else "non-ASCII byte"
            return f"{kind} 0x{outside[0]:02X}"
        title = title.decode("ascii")
    stripped = title.strip(" ")
    if not stripped:
        return "empty or all spaces"
    if len(stripped) > AE_TITLE_MAX_LENGTH:
        return f"longer than {AE_TITLE_MAX_LENGTH} characters"
    for char in stripped:
        if not " " <= char <= "~":
            return f"control or non-ASCII character 0x{ord(char):02X}"
        if char == "\\":
            return "backslash"
        if restricted and char not in _CALLING_TITLE_CHARACTERS:
            return f"character {char!r} not allowed"
    return None


def printable_title(title: str | bytes) -> str:
    """A title as it can be logged: padding stripped, anything unprintable escaped."""
    text = title.decode("latin-1") if isinstance(title, bytes) else title
    return text.strip(" ").encode("unicode_escape").decode("ascii")


@dataclass(frozen=True)
class TitleRejection:
    """Why an association request is refused for its AE titles.

    ``reason`` is the ``ainode_associations_rejected_total`` label (``calling_ae_title``,
    ``called_ae_title`` or ``unknown_peer``), ``diagnostic`` the A-ASSOCIATE-RJ reason, ``problem`` what
    is wrong, ``called`` and ``calling`` the titles as they can be logged.
    """

    reason: str
    diagnostic: int
    problem: str
    called: str
    calling: str


class TitleScreen:
    """Judges the AE titles of association requests to the node called ``own_title``,
    and with ``peers``, who may send from where."""

    def __init__(self, own_title: str, peers: PeerPolicy | None = None) -> None:
        self.own_title = own_title.strip(" ")
        self.peers = peers
        self._lock = threading.Lock()
        self._judged: dict[Association, TitleRejection | None] = {}

    def judge(self, called: str | bytes, calling: str | bytes) -> TitleRejection | None:
        """The rejection the titles call for; ``None`` when both are acceptable."""
        called_text, calling_text = printable_title(called), printable_title(calling)
        problem = ae_title_problem(called, restricted=False)
        if problem is None and called_text != self.own_title:
            problem = "not this node's AE title"
        if problem is not None:
            return TitleRejection("called_ae_title", CALLED_AE_NOT_RECOGNISED, problem, called_text, calling_text)
        problem = ae_title_problem(calling)
        if problem is not None:
            return TitleRejection("calling_ae_title", CALLING_AE_NOT_RECOGNISED, problem, called_text, calling_text)
        return None

    def watch(self, assoc: Association) -> None:
        """Judge the raw titles of ``assoc``'s A-ASSOCIATE-RQ before pynetdicom decodes them.

        Call before the association's reader starts (``EVT_CONN_OPEN``).
        """
        dul = assoc.dul
        decode = dul._decode_pdu

        def screened(bytestream: bytearray) -> object:
            if len(bytestream) >= _CALLING_FIELD.stop and bytestream[0] == _A_ASSOCIATE_RQ:
                rejection = self.judge(bytes(bytestream[_CALLED_FIELD]), bytes(bytestream[_CALLING_FIELD]))
                with self._lock:
                    self._judged[assoc] = rejection
                if rejection is not None:
                    bytestream = bytestream[:_CALLED_FIELD.start] + _PLACEHOLDER * 2 + bytestream[_CALLING_FIELD.stop:]
            return decode(bytestream)

        dul._decode_pdu = screened  # type: ignore[method-assign]

    def rejection(self, assoc: Association, *, tls: bool = False) -> TitleRejection | None:
        """The verdict on ``assoc``'s request (``EVT_REQUESTED``); judged from the decoded titles if not watched.

        ``tls``: whether the association came over the DICOM TLS listener.
        """
        request = assoc.requestor.primitive
        with self._lock:
            watched = assoc in self._judged
            verdict = self._judged.pop(assoc, None)
        if not watched:
            verdict = self.judge(str(request.called_ae_title), str(request.calling_ae_title))
        if verdict is not None or self.peers is None:
            return verdict
        calling = printable_title(str(request.calling_ae_title))
        info = assoc.requestor.address_info
        client_cn = peer_common_name(assoc.dul.socket) if tls else None
        problem = self.peers.problem(calling, info.address if info is not None else None, tls, client_cn)
        if problem is None:
            return None
        return TitleRejection(UNKNOWN_PEER, CALLING_AE_NOT_RECOGNISED, problem,
                              printable_title(str(request.called_ae_title)), calling)

    def forget(self, assoc: Association) -> None:
        """Drop what is held for a closed connection."""
        with self._lock:
            self._judged.pop(assoc, None)
