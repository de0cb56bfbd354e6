"""The package layout shows the architecture: rooms by concept, imports only flow downward.

Floors (ARCHITECTURE.md): core < policy < adapters < audit < run < daemon, report < cli.
A module may import its own room and the rooms below it, never a higher room nor a
room beside it (daemon and report share a floor). Every module's imports are read
with :mod:`ast`, including those inside functions, so a lazy import counts too.
``retention/__init__.py`` (the public API) and ``retention/testing.py`` (helpers for
users' tests) are exempt. Only the daemon imports APScheduler.

The public API (``retention.__all__``) and the ``retention`` command stay as they are:
every public name imports, and every documented command answers ``--help``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RETENTION = Path(sys.executable).with_name("retention")
# where each installed package's source lives (pyproject.toml's package-dir)
ROOTS = {"retention": REPO / "retention", "retention.adapters": REPO / "adapters",
         "retention.policies": REPO / "policies"}
ROOMS = ("policy", "adapters", "audit", "run", "daemon", "report", "cli")
FLOOR = {"core": 0, "policy": 1, "adapters": 2, "audit": 3, "run": 4, "daemon": 5,
         "report": 5, "cli": 6, "api": 7}
EXEMPT = {"retention", "retention.testing",  # the top-level API and users' test helpers
          "retention.__main__"}  # python -m retention: the command line
PUBLIC = ["AdapterError", "AuditError", "AuditStore", "Policy", "PolicyError",
          "RetentionError", "Rule", "RuleOutcome", "RunInfo", "RunOutcome", "Status",
          "UsageError", "Verdict", "build_report", "load_policy", "load_policy_text", "run"]
COMMANDS = ["validate", "plan", "report", "run", "daemon", "status", "schedule", "hold add",
            "hold list", "hold release", "audit list", "audit show", "audit verify",
            "audit export", "replay", "demo"]  # SPEC §3


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name."""
    found: dict[str, Path] = {}
    for prefix, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([prefix, *parts])] = path
    return found


MODULES = _modules()


def room(module: str) -> str:
    """The room of a ``retention`` module: core, one of ROOMS, or api (the package itself)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    return parts[1] if parts[1] in ROOMS else "core"  # retention.policies: example data


def imports(module: str) -> list[tuple[int, str]]:
    """(line, module) for every import in ``module``, names resolved to modules if they are."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if full in MODULES else base))
    return found


def test_every_package_is_installed() -> None:
    """pyproject.toml lists every package directory, so a wheel holds every room."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert listed == packages


def test_imports_name_modules_that_exist() -> None:
    """No import names a module that is not there (such as a path from before a move)."""
    missing = [f"{MODULES[m].relative_to(REPO)}:{line}: {target}"
               for m in MODULES for line, target in imports(m)
               if target.split(".")[0] == "retention" and target not in MODULES]
    assert not missing, "\n".join(missing)


def test_no_room_imports_a_higher_room_or_one_beside_it() -> None:
    """core < policy < adapters < audit < run < daemon, report < cli."""
    wrong = []
    for module in MODULES:
        if module in EXEMPT:
            continue
        for line, target in imports(module):
            if target.split(".")[0] != "retention" or room(target) == room(module):
                continue
            if FLOOR[room(target)] >= FLOOR[room(module)]:
                wrong.append(f"{MODULES[module].relative_to(REPO)}:{line}: {room(module)} "
                             f"imports {target} ({room(target)})")
    assert not wrong, "\n".join(wrong)


def test_only_the_daemon_imports_apscheduler() -> None:
    """The policy language checks schedules itself; the daemon turns them into triggers."""
    wrong = [f"{MODULES[m].relative_to(REPO)}:{line}" for m in MODULES
             for line, target in imports(m)
             if target.split(".")[0] == "apscheduler" and room(m) != "daemon"]
    assert not wrong, "\n".join(wrong)


def test_every_room_has_modules_and_the_floors_know_it() -> None:
    """The rooms the floors name are the subpackages there are (and nothing else is one)."""
    rooms = {m.split(".")[1] for m, p in MODULES.items()
             if p.name == "__init__.py" and m.count(".") == 1}
    assert rooms == {*ROOMS, "policies"}


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by their file name (no __init__.py in tests/)."""
    names = Counter(p.name for p in (REPO / "tests").rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []


def test_every_public_name_imports() -> None:
    """``from retention import ...`` gives exactly the public API, ``run`` the function."""
    import retention

    assert sorted(retention.__all__) == PUBLIC
    namespace: dict[str, object] = {}
    exec(f"from retention import {', '.join(PUBLIC)}", namespace)
    assert all(namespace[name] is not None for name in PUBLIC)
    assert callable(retention.run) and retention.run.__module__ == "retention.run.engine"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_documented_command_answers_help(command: str) -> None:
    """``retention COMMAND --help`` through the console script: usage on stdout, exit 0."""
    done = subprocess.run([str(RETENTION), *command.split(), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: retention {command} "), done.stdout
