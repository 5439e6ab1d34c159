"""Secrets of HTTP destinations, read from their files at send time (so they may rotate)."""
from __future__ import annotations

from pathlib import Path

from ..config import DestinationConfig

__all__ = ["CredentialError", "basic_auth", "bearer_token"]


class CredentialError(Exception):
    """A secret file could not be read; the message names the key and the file."""


def bearer_token(destination: DestinationConfig) -> str | None:
    """The token of ``token_file``, or ``None`` when the destination has none."""
    if destination.token_file is None:
        return None
    return _read("token_file", destination.token_file)


def basic_auth(destination: DestinationConfig) -> tuple[str, str] | None:
    """``(username, password)`` from ``username`` and ``password_file``, or ``None`` without them."""
    if destination.username is None or destination.password_file is None:
        return None
    return destination.username, _read("password_file", destination.password_file)


def _read(key: str, path: Path) -> str:
    """The file's text without its surrounding whitespace (a trailing newline is common)."""
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(f"{key} {str(path)!r} cannot be read: {exc.__class__.__name__}") from None
    if not value:
        raise CredentialError(f"{key} {str(path)!r} is empty")
    return value
