"""Export committed audit records as JSON lines or CSV (one line per affected record)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

FIELDS = ("run_id", "rule", "source", "table", "key", "action", "event_at", "due_at", "at")


def record_json(row: dict[str, Any]) -> dict[str, Any]:
    """A stored ``record`` entry in the stable export shape of SPEC §3."""
    return {
        "run_id": row["run_id"], "rule": row["rule"], "source": row["source"],
        "table": row["table_name"], "key": json.loads(row["record_key"]),
        "action": row["action"], "event_at": row["event_at"], "due_at": row["due_at"],
        "at": row["at"],
    }


def write(rows: Iterable[dict[str, Any]], fmt: str, out: TextIO) -> int:
    """Stream ``rows`` to ``out``; returns how many were written."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIELDS)
        for row in rows:
            rec = record_json(row)
            rec["key"] = json.dumps(rec["key"], sort_keys=True)
            writer.writerow([rec[f] for f in FIELDS])
            count += 1
        return count
    for row in rows:
        out.write(json.dumps(record_json(row), sort_keys=False, default=str) + "\n")
        count += 1
    return count
