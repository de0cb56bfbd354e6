"""A rule's ``where`` entries as plain data: the column, the comparison, the values.

:mod:`retention.policy.parts` reads them from a policy; plans carry them and the
adapters bind their values as parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Op(StrEnum):
    EQ = "eq"
    IN = "in"
    IS_NULL = "is_null"
    NOT_NULL = "not_null"
    NOT_EQ = "not_eq"  # {not: value}: every other row, NULL included
    NOT_IN = "not_in"  # {not: [values]}: every other row, NULL included


@dataclass(frozen=True, slots=True)
class Filter:
    """One entry of a rule's ``where`` map, always bound as parameters.

    ``{not: value}`` and ``{not: [values]}`` select exactly the rows that
    ``value`` and ``[values]`` leave, so a row whose column is NULL passes them
    (as in Django's ``exclude``; SQL's bare ``<>`` would drop it).
    """

    column: str
    op: Op
    values: tuple[Any, ...] = ()

    def __str__(self) -> str:
        if self.op is Op.IS_NULL:
            return f"{self.column} IS NULL"
        if self.op is Op.NOT_NULL:
            return f"{self.column} IS NOT NULL"
        listed = ", ".join(repr(v) for v in self.values)
        if self.op is Op.EQ:
            return f"{self.column} = {listed}"
        if self.op is Op.NOT_EQ:
            return f"({self.column} IS NULL OR {self.column} <> {listed})"
        if self.op is Op.NOT_IN:
            return f"({self.column} IS NULL OR {self.column} NOT IN ({listed}))"
        return f"{self.column} IN ({listed})"
