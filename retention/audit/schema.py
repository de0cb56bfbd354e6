"""Tables of the audit store (created on first use, in any SQLAlchemy database)."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects import mysql

metadata = MetaData()

# The hash-chained, append-only log. Every kind of record lives here:
# run_started, records (the records of one batch and table, compact in ``detail``;
# ``record``: one per affected row, written by earlier versions), batch_committed,
# batch_rolled_back, run_finished. Times are ISO-8601 text in UTC so the hash never
# depends on a driver's datetime handling. MySQL's TEXT holds 64 KiB: the detail of a
# whole batch needs LONGTEXT there (stores made before hold TEXT: their entries are
# split to fit, see AuditStore.batch_entries).
log = Table(
    "retention_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("run_id", String(36), nullable=False, index=True),
    Column("batch_id", String(48), nullable=True, index=True),
    Column("rule", String(200), nullable=True),
    Column("source", String(200), nullable=True),
    Column("table_name", String(200), nullable=True),
    Column("record_key", Text, nullable=True),
    Column("action", String(16), nullable=True),
    Column("event_at", String(40), nullable=True),
    Column("due_at", String(40), nullable=True),
    Column("at", String(40), nullable=False),
    Column("detail", Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"), nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# The end of the chain, one row: appends lock it, so the chain stays a line,
# and verify compares it with the last entry, so removing the tail is seen.
head = Table(
    "retention_chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

# A convenience index of runs, derived from the log (the log is the evidence).
runs = Table(
    "retention_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("policy", String(200), nullable=False),
    Column("policy_version", String(100), nullable=True),
    Column("policy_sha256", String(64), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("as_of", String(40), nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("finished_at", String(40), nullable=True),
    Column("status", String(16), nullable=True),
    Column("summary", Text, nullable=True),
)



# Legal holds: a record (rule + primary key) that no run may touch while the hold lasts.
# Placing and releasing are also chained entries in the log (hold_added, hold_released).
holds = Table(
    "retention_holds",
    metadata,
    Column("hold_id", String(36), primary_key=True),
    Column("policy", String(200), nullable=False, index=True),
    Column("rule", String(200), nullable=False),
    Column("record_key", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("placed_by", String(200), nullable=False),
    Column("placed_at", String(40), nullable=False),
    Column("until", String(10), nullable=True),  # last local date the hold lasts, inclusive
    Column("released_at", String(40), nullable=True),
    Column("released_by", String(200), nullable=True),
)

# Schedule slots a daemon has claimed: one row per (policy, rule, slot), so replicas
# and a repeated firing run each rule once per slot.
slots = Table(
    "retention_slots",
    metadata,
    Column("policy", String(200), primary_key=True),
    Column("rule", String(200), primary_key=True),
    Column("slot", String(40), primary_key=True),
    Column("claimed_at", String(40), nullable=False),
    Column("daemon_id", String(36), nullable=False),
)

# Daemon heartbeats: `retention status` reports a daemon whose beat is stale.
heartbeats = Table(
    "retention_heartbeats",
    metadata,
    Column("daemon_id", String(36), primary_key=True),
    Column("policy", String(200), nullable=False, index=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("beat_at", String(40), nullable=False),
    Column("stopped_at", String(40), nullable=True),
)

# Policy versions the runs used: the text (passwords masked) once per version. Each change
# is a chained ``policy_changed`` entry whose detail holds the sha256 of this text;
# ``last_seq`` is the entry that made this version the current one (retention.audit.policies).
policies = Table(
    "retention_policies",
    metadata,
    Column("policy", String(200), primary_key=True),
    Column("sha256", String(64), primary_key=True),  # of the file as read
    Column("version", String(100), nullable=True),
    Column("text", Text, nullable=False),
    Column("text_sha256", String(64), nullable=False),  # of ``text`` as stored
    Column("first_run_id", String(36), nullable=False),
    Column("first_at", String(40), nullable=False),
    Column("last_seq", Integer, nullable=False),
)
