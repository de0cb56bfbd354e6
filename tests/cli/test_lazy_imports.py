"""Each command imports what it needs when it runs: ``retention --help`` loads no engine.

``retention/__init__.py`` resolves its public names on first use (PEP 562), the
``retention`` group imports a command's modules inside the command, and the ``hold``
and ``audit`` groups load from their modules only when invoked. The heavy modules
(SQLAlchemy, pendulum, structlog, rich, APScheduler, prometheus_client, the drivers,
the YAML parser) are then imported by the commands that use them, not by ``--help``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from retention.cli import commands

HEAVY = ("sqlalchemy", "pendulum", "structlog", "rich", "apscheduler", "prometheus_client",
         "psycopg", "pymysql", "yaml")


def _imported(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running ``code``."""
    probe = (f"import sys\n{code}\n"
             f"print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    found: list[str] = json.loads(done.stdout.splitlines()[-1])
    return found


@pytest.mark.parametrize("code", [
    "import retention",
    "import retention.cli",
    "from retention.policy.rules import MAX_ROWS",
    "from retention.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
])
def test_the_package_and_the_top_level_help_import_no_heavy_module(code: str) -> None:
    assert _imported(code) == []


def test_a_report_imports_neither_the_daemon_nor_other_drivers(tmp_path: Path) -> None:
    """``retention report`` on SQLite: no APScheduler, prometheus_client, psycopg, PyMySQL."""
    database = tmp_path / "shop.db"
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"policy: p\nsources:\n  db: {{adapter: sql, url: 'sqlite:///{database}'}}\n"
                      f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
                      "rules:\n  r: {table: t, retain: 1 day after at}\n")
    code = (f"import sqlite3\nsqlite3.connect({str(database)!r}).execute("
            "'CREATE TABLE t (id INTEGER PRIMARY KEY, at DATETIME)')\n"
            "from retention.cli import main\n"
            f"try:\n    main(['report', {str(policy)!r}, '--format', 'json', '-o', "
            f"{str(tmp_path / 'out.json')!r}])\nexcept SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code")
    found = _imported(code)
    assert {"sqlalchemy", "pendulum", "structlog"} <= set(found)  # what a report needs
    assert not {"apscheduler", "prometheus_client", "psycopg", "pymysql"} & set(found)
    assert json.loads((tmp_path / "out.json").read_text())["rules"][0]["due"] == 0


def test_retention_run_stays_the_public_function_whatever_was_imported_first() -> None:
    """Importing ``retention.run.engine`` binds the subpackage on ``retention``; the
    public ``retention.run`` is still the function."""
    code = ("from retention.run import engine\nimport retention.run.enforce\nimport retention\n"
            "from retention import run\n"
            "assert retention.run is engine.run is run, retention.run\n"
            "assert retention.build_report.__module__ == 'retention.report.build'\n"
            "assert sorted(retention.__all__) == sorted(set(dir(retention)) & "
            "set(retention.__all__))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_lazy_groups_show_their_own_short_help_before_they_are_loaded() -> None:
    """``retention --help`` lists ``hold`` and ``audit`` with the help their modules give."""
    group = commands.Commands(commands.cli.name, params=commands.cli.params,
                              callback=commands.cli.callback, help=commands.cli.help)
    for name, command in commands.cli.commands.items():
        if name not in commands.LAZY_GROUPS:
            group.add_command(command, name)
    lazy = CliRunner().invoke(group, ["--help"]).output
    for name in commands.LAZY_GROUPS:
        assert group.get_command(None, name) is not None  # type: ignore[arg-type]
    loaded = CliRunner().invoke(group, ["--help"]).output
    assert lazy == loaded
    assert "  hold      Legal holds" in lazy and "  audit     Read and check" in lazy


def test_the_console_command_skips_the_final_collection_and_a_call_from_python_does_not(
        ) -> None:
    """``main()`` as the process's own command freezes the collector before exit (the
    interpreter then does not walk every imported object: bench/RESULTS.md); ``main(argv)``
    called from Python, as tests and embedding programs do, leaves the collector alone."""
    probe = ("import atexit, gc, sys\n"
             "from retention.cli import main\n"
             "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
             "sys.argv = ['retention', *sys.argv[1:]]\n"
             "{call}\n")
    own = subprocess.run([sys.executable, "-c", probe.format(call="main()"), "--help"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert own.returncode == 0, own.stderr
    assert "Usage: retention" in own.stdout and own.stdout.endswith("frozen True\n")
    called = subprocess.run(
        [sys.executable, "-c", probe.format(call="main(['--help'])")],
        capture_output=True, text=True, timeout=60, check=False)
    assert called.returncode == 0, called.stderr
    assert called.stdout.endswith("frozen False\n")
