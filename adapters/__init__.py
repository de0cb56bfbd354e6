"""Adapters: what retention uses to find and change records in a data store.

Installed as ``retention.adapters``. Built in: ``sql`` (SQLAlchemy 2 Core) and
``files`` (a directory tree).
Third-party adapters register under the entry-point group
``retention.adapters`` and implement :class:`~retention.adapters.protocol.Adapter`;
:mod:`retention.adapters.registry` finds an adapter by name and checks it.
"""

from __future__ import annotations

from retention.adapters.protocol import (
    Adapter,
    AffectedRow,
    Batch,
    BatchHook,
    DueCount,
    Kept,
    Recorded,
    Replayed,
)

__all__ = ["Adapter", "AffectedRow", "Batch", "BatchHook", "DueCount", "Kept", "Recorded",
           "Replayed"]
