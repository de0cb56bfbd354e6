"""Plugin adapters: found through the ``retention.adapters`` entry points, checked on load.

The adapters a policy names here are real entry points of the test-only package
``tests/plugin_broken`` (installed by ``.ci/run``: ``pip install ./tests/plugin_broken``).
Each incomplete one is refused before anything is read or written, with one line that
names the policy file, the source's ``adapter:`` line, the adapter and what it lacks
(exit 2), by every command that opens the source; a rule on another source still runs
with ``--rule``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from retention.adapters import registry
from retention.adapters.sql import SqlAdapter

from retention.errors import AdapterError
from retention.policy.rules import Source
from tests.support import snapshot, write_policy

RETENTION = Path(sys.executable).with_name("retention")
PLUGIN = Path(__file__).parents[1] / "plugin_broken"
BROKEN = ("broken-missing", "broken-signature", "broken-object", "broken-factory",
          "broken-import")

POLICY = """\
policy: plugins
sources:
  shop:
    adapter: sql
    url: sqlite:///{db}
  crm:
    description: the CRM, through a plugin
    adapter: {adapter}
audit:
  url: sqlite:///{audit}
rules:
  leads:
    source: shop
    table: leads
    retain: 30 days after closed_at
    max_fraction: 1.0
  contacts:
    source: crm
    table: contacts
    retain: 1 year after last_contact
"""
ADAPTER_LINE = 8  # the line of the crm source's `adapter:`

# What each refusal says after "policy.yaml:8: source 'crm': adapter 'NAME' "
_SEE = "; see the Adapter protocol in retention.adapters.protocol"
SAID = {
    "broken-missing": "is incomplete (retention_plugin_broken:MissingMethods): lacks "
                      "committed, replay" + _SEE,
    "broken-signature": "is incomplete (retention_plugin_broken:WrongSignature): count(plan) "
                        "cannot be called as count(plan, ahead=()); run_batch(plan, after, "
                        "hook) cannot be called as run_batch(plan, after, hook, "
                        "batch_id=None)" + _SEE,
    "broken-object": "is not a class or factory (the entry point names a dict)",
    "broken-factory": "is incomplete (retention_plugin_broken:_NoClose): lacks tables, count, "
                      "sample_keys, statements, run_batch, committed, forget, exists, read, "
                      "replay, close" + _SEE,
    "broken-import": "cannot be loaded: entry point 'retention_plugin_broken.absent:Adapter' "
                     "raised ModuleNotFoundError: No module named "
                     "'retention_plugin_broken.absent'",
}


@pytest.fixture(scope="module", autouse=True)
def _plugin_installed() -> None:
    names = {ep.name for ep in entry_points(group=registry.GROUP)}
    assert set(BROKEN) <= names, (
        f"the test plugin is not installed: pip install {PLUGIN} (as .ci/run does)")


def _shop(tmp_path: Path, adapter: str) -> tuple[Path, str]:
    db = tmp_path / "shop.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE leads (id INTEGER PRIMARY KEY, closed_at TIMESTAMP)")
        conn.exec_driver_sql("INSERT INTO leads VALUES (1, '2020-01-01 00:00:00'), "
                             "(2, '2020-02-01 00:00:00'), (3, NULL)")
    engine.dispose()
    path = write_policy(tmp_path, POLICY.format(db=db, audit=tmp_path / "audit.db",
                                                adapter=adapter))
    return path, f"sqlite:///{db}"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    return subprocess.run([str(RETENTION), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("adapter,command", [
    *((name, ["run"]) for name in BROKEN),
    ("broken-signature", ["validate"]),
    ("broken-factory", ["report", "--format", "json"]),
    ("broken-object", ["plan"]),
])
def test_an_incomplete_plugin_is_refused_on_load_naming_it_and_what_it_lacks(
        tmp_path: Path, adapter: str, command: list[str]) -> None:
    """One line: file, the source's adapter line, the adapter, what it lacks; exit 2;
    the other source's table untouched and no audit store made."""
    path, url = _shop(tmp_path, adapter)
    before = snapshot(url)

    proc = _cli(*command, str(path), cwd=tmp_path)

    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"{path}:{ADAPTER_LINE}: source 'crm': adapter {adapter!r} {SAID[adapter]}"]
    assert snapshot(url) == before
    assert not (tmp_path / "audit.db").exists()


def test_an_adapter_name_that_is_not_installed_is_one_line_listing_what_is(
        tmp_path: Path) -> None:
    path, url = _shop(tmp_path, "hubspot")
    before = snapshot(url)

    proc = _cli("run", str(path), cwd=tmp_path)

    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"{path}:{ADAPTER_LINE}: source 'crm': adapter 'hubspot' is not "
                           f"installed (built in: {', '.join(registry.BUILT_IN)}; "
                           "installed plugins: ")
    assert "broken-missing" in line and "complete-stub" in line
    assert snapshot(url) == before
    assert not (tmp_path / "audit.db").exists()


def test_a_rule_on_another_source_runs_without_loading_the_broken_plugin(
        tmp_path: Path) -> None:
    """An adapter is loaded when a command opens its source, so `--rule` on the sql
    source runs while the plugin is broken."""
    path, url = _shop(tmp_path, "broken-missing")

    proc = _cli("run", str(path), "--rule", "leads", "--format", "json", cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert snapshot(url)["leads"] == [{"id": 3, "closed_at": None}]


def test_a_complete_plugin_is_loaded_and_opened() -> None:
    cls = registry.adapter_class("complete-stub")
    adapter = registry.open_adapter(Source("crm", "complete-stub", {}))
    assert cls.__name__ == "CompleteStub" and adapter.url == "stub:crm"
    assert adapter.tables() == []


def test_the_built_in_sql_adapter_passes_the_same_check() -> None:
    assert registry.problems(SqlAdapter) == []


class _Base:
    """Every method but count, with the Protocol's shape."""

    def reflect(self, table: Any) -> Any: ...
    def tables(self) -> Any: ...
    def sample_keys(self, plan: Any, limit: Any) -> Any: ...
    def statements(self, plan: Any) -> Any: ...
    def run_batch(self, plan: Any, after: Any, hook: Any, batch_id: Any = None) -> Any: ...
    def committed(self, batch_ids: Any) -> Any: ...
    def forget(self, batch_ids: Any) -> Any: ...
    def exists(self, table: Any, keys: Any) -> Any: ...
    def read(self, table: Any, keys: Any, columns: Any) -> Any: ...
    def replay(self, plan: Any, recorded: Any, hook: Any, batch_id: Any = None) -> Any: ...
    def close(self) -> Any: ...


class _Flexible(_Base):
    def count(self, plan: Any, *args: Any, **kwargs: Any) -> Any: ...


class _ExtraOptional(_Base):
    def count(self, plan: Any, ahead: Any = (), verbose: bool = False) -> Any: ...


class _ExtraRequired(_Base):
    def count(self, plan: Any, ahead: Any, verbose: bool) -> Any: ...


class _KeywordOnly(_Base):
    def count(self, *, plan: Any, ahead: Any = ()) -> Any: ...


class _RenamedOptional(_Base):
    def count(self, plan: Any, later: Any = ()) -> Any: ...


class _Static(_Base):
    @staticmethod
    def count(plan: Any, ahead: Any = ()) -> Any: ...


@pytest.mark.parametrize("cls,said", [
    (_Flexible, []),
    (_ExtraOptional, []),
    (_ExtraRequired, ["count(plan, ahead, verbose) cannot be called as count(plan, ahead=())"]),
    (_KeywordOnly, ["count(*, plan, ahead=()) cannot be called as count(plan, ahead=())"]),
    # the engine may pass ahead= by keyword
    (_RenamedOptional, ["count(plan, later=()) cannot be called as count(plan, ahead=())"]),
    (_Static, []),
    (_Base, ["lacks count"]),
])
def test_a_method_is_accepted_when_it_binds_every_call_the_engine_makes(
        cls: type, said: list[str]) -> None:
    assert registry.problems(cls) == said


def test_a_factory_that_takes_no_source_is_refused() -> None:
    with pytest.raises(AdapterError, match="cannot be called with the source"):
        registry._checked("x", lambda: None)
