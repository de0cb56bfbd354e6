"""Find adapters by name: built-in ones and those registered as entry points.

Third-party adapters register in the entry-point group ``retention.adapters``;
each is checked when loaded and the error names what it lacks.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from retention.adapters.protocol import Adapter

from retention.errors import AdapterError
from retention.policy.rules import Source

GROUP = "retention.adapters"  # entry-point group third-party adapters register in
_REQUIRED = ("reflect", "tables", "count", "sample_keys", "statements", "run_batch",
             "committed", "forget", "exists", "read", "replay", "close")


def adapter_class(name: str) -> Any:
    if name == "sql":
        from retention.adapters.sql import SqlAdapter

        return SqlAdapter
    if name == "files":
        from retention.adapters.files import FilesAdapter

        return FilesAdapter
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            cls = ep.load()
            missing = [m for m in _REQUIRED if not callable(getattr(cls, m, None))]
            if missing:
                raise AdapterError(name, f"lacks {', '.join(missing)} of the adapter protocol")
            return cls
    raise AdapterError(name, "is not installed (built in: sql, files)")


def open_adapter(source: Source) -> Adapter:
    """An adapter instance for ``source``. Raises :class:`AdapterError` if none fits."""
    adapter: Adapter = adapter_class(source.adapter)(source)
    return adapter
