"""The compliance suite of ``retention.testing.compliance`` against every adapter we ship
and the example plugin (``tests/plugin_jsonl``, installed as a real entry point)."""

from __future__ import annotations

import json
import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from retention.db import create_engine
from retention.testing.compliance import AdapterCompliance, MakeStore, Record, Store

RECORDS = sa.Table(
    "records", sa.MetaData(),
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("event_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")),
    sa.Column("note", sa.String(40)),
)


class TestSqlCompliance(AdapterCompliance):
    """The SQL adapter on SQLite, PostgreSQL and MariaDB (naive UTC timestamps)."""

    supports_anonymize = True

    @pytest.fixture
    def make_store(self, db_url: str) -> MakeStore:
        engine = create_engine(db_url)

        def rows(columns: str) -> dict[str, object]:
            with engine.connect() as conn:
                return {r.id: getattr(r, columns, None) for r in conn.execute(RECORDS.select())}

        def make(records: list[Record]) -> Store:
            with engine.begin() as conn:
                RECORDS.drop(conn, checkfirst=True)
                RECORDS.create(conn)
                if records:
                    conn.execute(RECORDS.insert(), [
                        {"id": r.key, "event_at": r.event_at.replace(tzinfo=None),
                         "note": r.note} for r in records])
            return Store(source={"adapter": "sql", "url": db_url},
                         rule={"table": "records"}, event="event_at",
                         keys=lambda: set(rows("id")),
                         notes=lambda: rows("note"))

        yield make  # type: ignore[misc]
        engine.dispose()


class TestFilesCompliance(AdapterCompliance):
    """The files adapter: a record is a file named by its key, its event the mtime."""

    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        root = tmp_path / "tree"

        def make(records: list[Record]) -> Store:
            root.mkdir()
            for r in records:
                path = root / r.key
                path.write_text(r.note)
                ns = (r.event_at.timestamp().__floor__() * 10**9
                      + r.event_at.microsecond * 1000)
                os.utime(path, ns=(ns, ns))
            return Store(source={"adapter": "files", "path": str(root)}, event="modified",
                         key_column="path",
                         keys=lambda: {p.name for p in root.iterdir() if p.is_file()})

        return make


class TestJsonlPluginCompliance(AdapterCompliance):
    """The example plugin, found through its entry point like any third-party adapter."""

    supports_anonymize = True

    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        assert "jsonl" in {ep.name for ep in entry_points(group="retention.adapters")}, \
            "the example plugin is not installed: pip install -e tests/plugin_jsonl"
        path = tmp_path / "records.jsonl"

        def read() -> dict[str, object]:
            lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            return {r["id"]: r.get("note") for r in lines if "id" in r}

        def make(records: list[Record]) -> Store:
            path.write_text("".join(json.dumps({"id": r.key, "event_at": r.event_at.isoformat(),
                                                "note": r.note}) + "\n" for r in records))
            return Store(source={"adapter": "jsonl", "path": str(tmp_path)},
                         rule={"table": "records"}, keys=lambda: set(read()), notes=read)

        return make
