"""structlog set-up: one event per line on stderr, JSON unless stderr is a terminal.

The stdlib bridge formats SQLAlchemy's and APScheduler's records the same way.
Tracebacks are rendered without frame locals: they can hold passwords and
personal data.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import structlog

from retention import secrets

_configured = False


def get(name: str) -> Any:
    """A structlog logger named ``name``."""
    return structlog.get_logger(name)


def configure(level: str = "info", json: bool | None = None, file: Path | None = None) -> None:
    """Route structlog and stdlib logging to stderr. Safe to call more than once.

    With ``file``, every event at ``level`` goes to that file as JSON lines and only
    warnings and errors reach stderr (``retention demo`` keeps its story readable).
    """
    global _configured
    as_json = not sys.stderr.isatty() if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        secrets.scrub_event,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    numeric = getattr(logging, level.upper(), logging.INFO)
    handler = _Stderr()
    handler.setFormatter(_formatter(shared, as_json))
    handlers: list[logging.Handler] = [handler]
    if file is not None:
        handler.setLevel(max(numeric, logging.WARNING))
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(_formatter(shared, True))
        handlers.append(to_file)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):  # a demo's log file from an earlier call
            old.close()
    root.handlers = handlers
    root.setLevel(numeric)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    _configured = True


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each event, not as it was at start-up: a
    progress bar (:mod:`retention.run.progress`) routes stderr above itself."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _formatter(shared: list[Any], as_json: bool) -> logging.Formatter:
    """One event per line: JSON (tracebacks as data, no frame locals) or console text."""
    tail: list[Any] = []
    renderer: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer()
        tail = [structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False))]
    else:
        renderer = structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.plain_traceback)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )
