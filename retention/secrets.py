"""Keep passwords out of every output: logs, reports, errors and the audit log.

Each password found in a URL retention opens is remembered here, and
:func:`scrub` replaces it wherever it appears in text; a structlog processor
does the same for every log event.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

MASK = "***"  # what a password is replaced with
_known: set[str] = set()


def remember(secret: str | None) -> None:
    """Treat ``secret`` as a password from now on (ignored if empty or very short)."""
    if secret and len(secret) >= 3:
        _known.add(secret)


def scrub(text: str) -> str:
    """``text`` with every remembered password masked."""
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub_data(value: Any) -> Any:
    """``value`` (JSON-like data) with every remembered password masked in its strings.

    Only strings change, so numbers and the structure stay as they are.
    """
    return _deep(value) if _known else value


def scrub_event(_logger: Any, _name: str, event: MutableMapping[str, Any]
                ) -> MutableMapping[str, Any]:
    """structlog processor: mask remembered passwords in every string value."""
    if not _known:
        return event
    for key, value in list(event.items()):
        if isinstance(value, str):
            event[key] = scrub(value)
        elif isinstance(value, dict | list | tuple):
            event[key] = _deep(value)
    return event


def _deep(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep(v) for v in value]
    return value
