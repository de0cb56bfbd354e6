"""``retention demo``: the first run a user sees, in a terminal and from an installed wheel.

The demo tells its story on stdout and keeps its logs in a file it names (only warnings
reach the terminal); its closing ``Try:`` line works from any directory; and it works
from a wheel installed into a fresh virtualenv (the example policies ship with the
package). Every test runs the console script as a user would.
"""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

RETENTION = Path(sys.executable).with_name("retention")
REPO = Path(__file__).resolve().parents[2]
_OUR_VARS = ("SHOP_DATABASE_URL", "RETENTION_AUDIT_URL", "RETENTION_POLICY")
# A structlog console line: "2026-02-28T12:00:00.123456Z [info     ] run_started ..."
LOG_LINE = re.compile(r"^\S*\d{4}-\d\d-\d\dT\S+\s+\[\s*(debug|info)", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _OUR_VARS}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def in_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on a pseudo-terminal; its exit code and
    everything the terminal showed (colour codes and carriage returns removed)."""
    main, child = pty.openpty()
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, cwd=cwd, env=env,
                            close_fds=True)
    os.close(child)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError as exc:  # EIO: the child closed the terminal
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(main)
        code = proc.wait(timeout=120)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return code, ANSI.sub("", text).replace("\r", "")


def try_line(shown: str) -> str:
    """The demo's closing ``Try:`` command."""
    lines = [line for line in shown.splitlines() if line.startswith("Try: ")]
    assert len(lines) == 1, shown
    return lines[0].removeprefix("Try: ")


def run_try_line(command: str, cwd: Path, env: dict[str, str]) -> dict[str, object]:
    """Run the Try: command through the shell in ``cwd``; its JSON report."""
    done = subprocess.run(["sh", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_demo_in_a_terminal_prints_its_story_and_keeps_the_logs_in_a_file(
        tmp_path: Path) -> None:
    """On a terminal: no info/debug log lines between the tables; the log file it names
    holds them (JSON lines of the runs)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    code, shown = in_terminal([str(RETENTION), "demo", "--dir", str(tmp_path / "my demo")],
                              elsewhere, _env(RETENTION.parent))

    assert code == 0, shown
    assert "Retention report: webshop" in shown and "audit chain intact" in shown
    assert not LOG_LINE.search(shown), shown
    assert "run_started" not in shown and "batch_committed" not in shown
    named = re.search(r"^Logs: (.+)$", shown, re.MULTILINE)
    assert named, shown
    log_file = Path(named.group(1).strip())
    assert log_file.is_absolute() and log_file.parent == tmp_path / "my demo"
    events = [json.loads(line)["event"] for line in log_file.read_text().splitlines()]
    assert events.count("run_finished") == 2 and "batch_committed" in events


def test_the_demos_try_line_works_from_any_directory(tmp_path: Path) -> None:
    """`Try:` names absolute paths, quoted for the shell (the demo directory has a space)."""
    demo_dir = tmp_path / "a demo"
    (tmp_path / "elsewhere").mkdir()
    done = subprocess.run([str(RETENTION), "demo", "--dir", str(demo_dir)], cwd=tmp_path,
                          env=_env(RETENTION.parent), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    report = run_try_line(try_line(done.stdout), tmp_path / "elsewhere",
                          _env(RETENTION.parent))

    assert report["policy"] == "webshop"
    assert not list((tmp_path / "elsewhere").iterdir())  # nothing made in the working dir


def _bare_env() -> dict[str, str]:
    """No virtualenv on PATH: the README's `.venv/bin/retention demo` without activating."""
    env = {k: v for k, v in os.environ.items() if k not in (*_OUR_VARS, "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin")
                                  if p != str(RETENTION.parent))
    return env


def test_the_try_line_runs_without_an_activated_virtualenv(tmp_path: Path) -> None:
    """Started by its path with no venv on PATH, the demo names the script it ran as."""
    env = _bare_env()
    assert subprocess.run(["sh", "-c", "command -v retention"], env=env, capture_output=True,
                          check=False).returncode != 0  # a bare `retention` is not found
    done = subprocess.run([str(RETENTION), "demo", "--dir", str(tmp_path / "a demo")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    command = try_line(done.stdout)
    assert f"{RETENTION} report " in command, command
    assert run_try_line(command, tmp_path, env)["policy"] == "webshop"


def test_python_dash_m_retention_runs_the_cli_and_its_demo_names_that_way_in(
        tmp_path: Path) -> None:
    """`python -m retention` works; its Try: line says `PYTHON -m retention`."""
    env = _bare_env()
    helped = subprocess.run([sys.executable, "-m", "retention", "--help"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert helped.returncode == 0 and "validate" in helped.stdout, helped.stderr
    assert helped.stdout.startswith("Usage: retention "), helped.stdout
    done = subprocess.run([sys.executable, "-m", "retention", "demo", "--dir",
                           str(tmp_path / "demo")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    command = try_line(done.stdout)
    assert f"{sys.executable} -m retention report " in command, command
    assert run_try_line(command, tmp_path, env)["policy"] == "webshop"


def _source_copy(target: Path) -> Path:
    """The project as an sdist would hold it (no venv, caches or build output)."""
    shutil.copytree(REPO, target, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
        ".hypothesis", "*.db", "retention-demo"))
    return target


@pytest.mark.slow
def test_demo_runs_from_a_wheel_installed_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    """`pip wheel .`, install into a new venv (no source tree on its path), run the demo
    and its Try: line from another directory: the example policies ship in the wheel."""
    source = _source_copy(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("retention-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("webshop.yaml", "webshop.sql", "saas.yaml", "saas.sql"):
        assert f"retention/policies/{name}" in names, sorted(names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                   check=True, timeout=600)
    shutil.rmtree(source)  # the installed package must not need the source tree
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(venv / "bin")

    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import retention.policies.examples as e; "
                            "print(e.policy_path('webshop'))"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    done = subprocess.run([str(venv / "bin" / "retention"), "demo", "--dir",
                           str(tmp_path / "demo")], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit chain intact" in done.stdout
    report = run_try_line(try_line(done.stdout), elsewhere, env)
    assert report["policy"] == "webshop"
