"""Export committed audit records as JSON lines or CSV (one line per affected record).

:func:`stream` reads the store's entries once, in chain order, and writes each
record of a compact ``records`` entry straight from its arrays (the event and due
instants cached per stored value and local date, the line assembled as text), so
a million records take about a second and memory stays flat.
:func:`write` takes per-record dicts (``AuditStore.records()``) and writes the same
lines; both give byte-identical output.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, TextIO

from retention.audit import records

if TYPE_CHECKING:
    from retention.audit.store import AuditStore

WRITE_LINES = 4096  # export lines joined and written at once (an entry may hold 10^5)
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
    """Stream per-record ``rows`` to ``out``; returns how many were written."""
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


def stream(store: AuditStore, fmt: str, out: TextIO, since: str | None = None,
           run_id: str | None = None, until: str | None = None, rule: str | None = None
           ) -> int:
    """Every committed record of ``store`` (at or after ``since``, before ``until``, of
    ``rule``) to ``out``, in chain order; returns how many were written. Output as
    :func:`write` gives it."""
    return write_entries(store.record_entries(run_id=run_id, since=since, until=until,
                                              rule=rule), fmt, out)


def write_entries(entries: Iterable[Mapping[str, Any]], fmt: str, out: TextIO) -> int:
    """Committed log entries (``records`` and ``record``) as export lines."""
    times = _Times()
    count = 0
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(FIELDS)
    for entry in entries:
        if entry["kind"] != records.KIND:
            count += write([dict(entry)], fmt, out) if writer is None else _csv_legacy(
                writer, entry)
            continue
        compact = records.Compact.parse(entry["detail"])
        if writer is not None:
            lines = _csv_lines(entry, compact, times)
        else:
            lines = _json_lines(entry, compact, times)
        while chunk := list(itertools.islice(lines, WRITE_LINES)):  # memory: a chunk's text
            out.write("".join(chunk))
            count += len(chunk)
    return count


def _json_lines(entry: Mapping[str, Any], compact: records.Compact, times: _Times
                ) -> Iterator[str]:
    start = (f'{{"run_id": {_text(entry["run_id"])}, "rule": {_text(entry["rule"])}, '
             f'"source": {_text(entry["source"])}, "table": {_text(entry["table_name"])}, '
             '"key": ')
    middle = f', "action": {_text(entry["action"])}, "event_at": '
    end = f', "at": {_text(entry["at"])}}}\n'
    fragments = times.fragments(compact, "json")
    if _int_keys(compact):
        start += "{" + encode_basestring_ascii(compact.columns[0]) + ": "
        middle = "}" + middle
        keys: Iterable[Any] = compact.keys
    else:
        keys = _key_texts(compact)
    return (f"{start}{key}{middle}{fragment}{end}"
            for key, fragment in zip(keys, fragments, strict=True))


def _csv_lines(entry: Mapping[str, Any], compact: records.Compact, times: _Times
               ) -> Iterator[str]:
    # The fields an entry shares, each followed (or preceded) by its comma.
    start = _csv_row([entry["run_id"], entry["rule"], entry["source"], entry["table_name"], ""])
    middle = "," + _csv_row([entry["action"], ""])
    end = "," + _csv_row([entry["at"], ""])[:-1] + "\n"
    fragments = times.fragments(compact, "csv")
    if _int_keys(compact):  # the key is JSON text with quotes: always quoted, "" doubled
        start += '"{' + encode_basestring_ascii(compact.columns[0]).replace('"', '""') + ": "
        middle = '}"' + middle
        keys: Iterable[Any] = compact.keys
    else:
        keys = ('"' + key.replace('"', '""') + '"' for key in _key_texts(compact))
    return (f"{start}{key}{middle}{fragment}{end}"
            for key, fragment in zip(keys, fragments, strict=True))


def _csv_row(fields: list[Any]) -> str:
    """``fields`` as ``csv.writer`` writes them, without the line end."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(fields)
    return text.getvalue()[:-1]


def _int_keys(compact: records.Compact) -> bool:
    return len(compact.columns) == 1 and all(type(v) is int for v in compact.keys)


class _Times:
    """``event_at`` and ``due_at`` of stored values, per reading, remembered per value."""

    def __init__(self) -> None:
        self._readers = records.Readers()
        self._fragments: dict[tuple[records.Reading, str], dict[Any, str]] = {}

    def fragments(self, compact: records.Compact, fmt: str) -> list[str]:
        """Per value the text from ``event_at``'s value to ``due_at``'s (JSON or CSV)."""
        known = self._fragments.setdefault((compact.reading, fmt), {})
        if len(known) > records.CACHE_LIMIT:
            known.clear()
        values = compact.events
        times = self._readers(compact.reading).times
        shape = _json_fragment if fmt == "json" else _csv_fragment
        try:
            missing = set(values).difference(known)
        except TypeError:  # a value that is no JSON scalar: no instant
            return [shape(times(v) if _scalar(v) else (None, None)) for v in values]
        for value in missing:
            known[value] = shape(times(value))
        return list(map(known.__getitem__, values))


def _json_fragment(pair: tuple[str | None, str | None]) -> str:
    return f'{_text(pair[0])}, "due_at": {_text(pair[1])}'


def _csv_fragment(pair: tuple[str | None, str | None]) -> str:
    # ISO-8601 instants need no quoting; a value that is no instant is an empty field.
    return f"{pair[0] or ''},{pair[1] or ''}"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


def _csv_legacy(writer: Any, entry: Mapping[str, Any]) -> int:
    rec = record_json(dict(entry))
    rec["key"] = json.dumps(rec["key"], sort_keys=True)
    writer.writerow([rec[f] for f in FIELDS])
    return 1


def _text(value: Any) -> str:
    """``json.dumps`` of a str or None, faster."""
    return "null" if value is None else encode_basestring_ascii(value)


def _value(value: Any) -> str:
    if type(value) is int:
        return str(value)
    if type(value) is str:
        return encode_basestring_ascii(value)
    return json.dumps(value)


def _key_texts(compact: records.Compact) -> Iterator[str]:
    """Each key as ``json.dumps`` of its mapping (columns sorted) writes it."""
    columns = compact.columns
    if len(columns) == 1:
        prefix = "{" + encode_basestring_ascii(columns[0]) + ": "
        return (f"{prefix}{_value(v)}}}" for v in compact.keys)
    order = sorted(range(len(columns)), key=lambda i: columns[i])
    names = [encode_basestring_ascii(columns[i]) for i in order]
    return ("{" + ", ".join(f"{n}: {_value(values[i])}" for n, i in zip(names, order,
                                                                      strict=True)) + "}"
            for values in compact.keys)
