"""Who holds a lease: ``host:pid:token``, and whether that holder is gone.

The token is random per process start, so a node restarted with the same process id
(PID 1 in a container) still recognises the leases of its previous life as orphans.
"""
from __future__ import annotations

import os
import secrets
import socket

__all__ = ["lease_owner_id", "owner_is_gone"]

_TOKEN = secrets.token_hex(4)


def lease_owner_id() -> str:
    """This process's lease owner name."""
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


def owner_is_gone(owner: str) -> bool:
    """Whether ``owner`` is an earlier process on this host that no longer runs.

    Owners on other hosts are never judged here: their leases end when they run out.
    """
    host, _, rest = owner.partition(":")
    pid_text, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return token != _TOKEN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
