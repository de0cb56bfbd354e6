"""The deployment files in deploy/ are valid and name real commands and options."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import yaml

from retention.cli import cli
from tests.support import missing

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ROOT = DEPLOY.parent


def _check_cli_args(args: list[str]) -> None:
    """Parse ``args`` with the real command line: unknown commands or options raise."""
    os.environ.setdefault("RETENTION_POLICY", "policy.yaml")
    command: click.Command = cli
    while isinstance(command, click.Group):
        name, sub, args = command.resolve_command(click.Context(command), list(args))
        assert sub is not None and name
        command = sub
    command.make_context(command.name or "", list(args), resilient_parsing=False)


def test_systemd_units_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the daemon service and the run service and timer."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze is not installed")
    script = shutil.which("retention") or str(Path(sys.executable).with_name("retention"))
    for unit in (DEPLOY / "systemd").iterdir():
        text = unit.read_text().replace("/usr/local/bin/retention", script)
        (tmp_path / unit.name).write_text(text)
    names = sorted(str(p) for p in tmp_path.iterdir())
    result = subprocess.run([analyze, "verify", *names], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "Unknown key" not in result.stderr, result.stderr


def test_systemd_daemon_unit_is_hardened_and_restarts() -> None:
    """The daemon unit runs as a dedicated user with a read-only system and restarts."""
    text = (DEPLOY / "systemd" / "retention-daemon.service").read_text()
    for line in ("User=retention", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "Restart=on-failure", "KillSignal=SIGTERM", "ExecReload=/bin/kill -HUP"):
        assert line in text
    exec_start = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    _check_cli_args(shlex.split(exec_start.split("=", 1)[1])[1:])


def test_crontab_entry_names_a_real_command() -> None:
    """The crontab line has five time fields, a user, and a valid retention command."""
    lines = [x for x in (DEPLOY / "cron" / "retention.crontab").read_text().splitlines()
             if x and not x.startswith("#") and "=" not in x.split()[0]]
    assert len(lines) == 1
    fields = lines[0].split(None, 6)
    assert len(fields) == 7 and fields[5] == "retention"
    command = fields[6].split("retention run", 1)
    _check_cli_args(["run", *shlex.split(command[1])])


def test_dockerfile_entry_point_is_the_console_script() -> None:
    """ENTRYPOINT names the installed console script; CMD is a valid subcommand; non-root."""
    text = (DEPLOY / "Dockerfile").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = next(x for x in text.splitlines() if x.startswith("ENTRYPOINT"))
    cmd = next(x for x in text.splitlines() if x.startswith("CMD"))
    assert yaml.safe_load(entry.split(None, 1)[1]) == ["retention"]
    assert "retention" in scripts
    _check_cli_args(yaml.safe_load(cmd.split(None, 1)[1]))
    assert "USER retention" in text and "slim" in text


def test_compose_file_runs_postgres_and_the_daemon() -> None:
    """compose.yaml has PostgreSQL and the daemon, with the policy mounted read-only."""
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    daemon = services["retention"]
    assert daemon["build"]["dockerfile"] == "deploy/Dockerfile"
    assert any(v.endswith(":/etc/retention/policy.yaml:ro") for v in daemon["volumes"])
    for volume in daemon["volumes"] + services["postgres"]["volumes"]:
        source = volume.split(":", 1)[0]
        assert source in doc["volumes"] or (DEPLOY / source).resolve().exists(), source


def test_kubernetes_manifests_have_their_required_fields() -> None:
    """CronJob forbids overlap, Deployment runs the daemon, both read Secret and ConfigMap."""
    docs = {p.stem: yaml.safe_load(p.read_text()) for p in (DEPLOY / "k8s").glob("*.yaml")}
    cron = docs["cronjob"]
    assert cron["apiVersion"] == "batch/v1" and cron["kind"] == "CronJob"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    _check_cli_args(container["args"])
    deployment = docs["deployment"]
    assert deployment["kind"] == "Deployment"
    daemon = deployment["spec"]["template"]["spec"]["containers"][0]
    _check_cli_args(daemon["args"])
    for spec in (container, daemon):
        assert spec["envFrom"][0]["secretRef"]["name"] == docs["secret"]["metadata"]["name"]
        assert spec["volumeMounts"][0]["mountPath"] == "/etc/retention"
    assert docs["configmap"]["kind"] == "ConfigMap" and "policy.yaml" in docs["configmap"]["data"]
    policy = yaml.safe_load(docs["configmap"]["data"]["policy.yaml"])
    assert policy["rules"] and policy["sources"]
