"""Adapters that are not complete, each registered under ``retention.adapters``.

retention must refuse each when a policy names it, before anything is changed, with
one line naming the adapter and what it lacks. ``CompleteStub`` has every method with
the Protocol's signature (and reaches no data): it is accepted, so the refusals are
not the registry refusing every plugin.
"""

from __future__ import annotations

from typing import Any

NOT_A_CLASS = {"adapter": "a mapping, not a class"}  # neither a class nor a factory


class CompleteStub:
    """Every method of the Protocol with its signature; a store with no tables."""

    name = "complete-stub"
    supports_returning = False

    def __init__(self, source: Any) -> None:
        self.url = f"stub:{source.name}"

    def reflect(self, table: str) -> None:
        return None

    def tables(self) -> list[str]:
        return []

    def count(self, plan: Any, ahead: Any = ()) -> Any:
        raise NotImplementedError

    def sample_keys(self, plan: Any, limit: int) -> list[Any]:
        return []

    def statements(self, plan: Any) -> list[str]:
        return []

    def run_batch(self, plan: Any, after: Any, hook: Any, batch_id: Any = None) -> Any:
        raise NotImplementedError

    def committed(self, batch_ids: list[str]) -> set[str]:
        return set()

    def forget(self, batch_ids: list[str]) -> None:
        return None

    def exists(self, table: str, keys: list[Any]) -> list[Any]:
        return []

    def read(self, table: str, keys: list[Any], columns: list[str]) -> list[Any]:
        return []

    def replay(self, plan: Any, recorded: Any, hook: Any, batch_id: Any = None) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        return None


class MissingMethods(CompleteStub):
    """Without ``replay`` and ``committed`` (set to None: not callable)."""

    replay = None  # type: ignore[assignment]
    committed = None  # type: ignore[assignment]


class WrongSignature(CompleteStub):
    """``count`` without ``ahead`` and ``run_batch`` without ``batch_id``."""

    def count(self, plan: Any) -> Any:  # type: ignore[override]
        raise NotImplementedError

    def run_batch(self, plan: Any, after: Any, hook: Any) -> Any:  # type: ignore[override]
        raise NotImplementedError


class _NoClose:
    name = "broken-factory"
    supports_returning = False
    url = "nowhere"

    def reflect(self, table: str) -> None:
        return None


def make_incomplete(source: Any) -> Any:
    """A factory whose product has only ``reflect``: refused when the source is opened."""
    return _NoClose()
