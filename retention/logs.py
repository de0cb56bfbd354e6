"""structlog set-up: one event per line on stderr, JSON unless stderr is a terminal.

The stdlib bridge formats SQLAlchemy's and APScheduler's records the same way.
Tracebacks are rendered without frame locals: they can hold passwords and
personal data.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from retention import secrets

_configured = False


def get(name: str) -> Any:
    """A structlog logger named ``name``."""
    return structlog.get_logger(name)


def configure(level: str = "info", json: bool | None = None) -> None:
    """Route structlog and stdlib logging to stderr. Safe to call more than once."""
    global _configured
    as_json = not sys.stderr.isatty() if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        secrets.scrub_event,
    ]
    renderer: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer()
        shared_tail: list[Any] = [structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False))]
    else:
        renderer = structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.plain_traceback)
        shared_tail = []
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *shared_tail, renderer],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    _configured = True
