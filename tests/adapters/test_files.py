"""The files adapter: globs and name patterns, the walk, links, changed files, holds by
path, the archive, coverage, bad input, and kill -9 at each step of a batch."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from retention.adapters import files_tree as tree
from retention.adapters.files import FilesAdapter
from retention.adapters.files_journal import Journal

from retention.audit.store import AuditStore
from retention.errors import PolicyError, UsageError
from retention.policy.load import load_policy
from retention.report.build import build as build_report
from retention.run import engine, replay
from tests.support import write_policy

RETENTION = Path(sys.executable).with_name("retention")
FAULTPOINT = Path(__file__).parents[1] / "run" / "faultpoint"
AS_OF = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)
OLD = dt.datetime(2025, 1, 10, 9, 30, tzinfo=dt.UTC)  # due under "90 days after modified"
RUN_TIMEOUT = 120  # seconds a run of the kill tests may take

POLICY = """\
policy: maillog
version: "1"
timezone: UTC
sources:
  maillog:
    adapter: files
    path: {root}
    include: ["**/*.log"]
    exclude: ["keep/**"]{extra}
audit:
  url: sqlite:///{audit}
rules:
  mail-log:
    source: maillog
    retain: {retain}
    max_fraction: 1.0
    batch_size: {batch}
"""


def put(root: Path, rel: str, text: str = "mail", at: dt.datetime = OLD) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    ns = int(at.timestamp()) * 10**9 + at.microsecond * 1000
    os.utime(path, ns=(ns, ns))
    return path


def state(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file and link under ``root``: content (or link target) and mtime."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = (os.readlink(path).encode(), 0)
        elif path.is_file():
            out[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


def policy_file(tmp: Path, retain: str = "90 days after modified", extra: str = "",
                batch: int = 100) -> Path:
    return write_policy(tmp, POLICY.format(root=tmp / "logs", audit=tmp / "audit.db",
                                           extra=extra, retain=retain, batch=batch))


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RETENTION), *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=RUN_TIMEOUT)


def records(tmp: Path) -> list[dict[str, Any]]:
    store = AuditStore(f"sqlite:///{tmp / 'audit.db'}")
    try:
        assert store.verify().ok
        assert store.open_batches() == []
        return [{**r, "key": json.loads(r["record_key"])} for r in store.records()]
    finally:
        store.close()


# -- globs and name patterns ---------------------------------------------------------------

def test_globs_match_whole_relative_paths_and_double_stars_cross_directories() -> None:
    logs, top = tree.compile_glob("**/*.log"), tree.compile_glob("*.log")
    assert logs.match("a.log") and logs.match("x/y/a.log") and not logs.match("a.log.gz")
    assert top.match("a.log") and not top.match("x/a.log")
    assert tree.compile_glob("mail-[0-9]?.txt").match("mail-1x.txt")
    assert not tree.compile_glob("[!a]*").match("abc")


@pytest.mark.parametrize("glob", ["mail-[0-9.log", "/var/log/*.log", "../*.log", "***.log",
                                  "{a,b}.log", ""])
def test_a_glob_that_does_not_parse_is_refused(glob: str) -> None:
    with pytest.raises(tree.PatternError):
        tree.compile_glob(glob)


@given(st.text(alphabet="abcxyz019-_.", min_size=1, max_size=12).filter(
    lambda n: n not in (".", "..")))
def test_a_glob_without_wildcards_matches_exactly_its_own_path(name: str) -> None:
    compiled = tree.compile_glob(name)
    assert compiled.match(name)
    assert not compiled.match(name + "x") and not compiled.match("d/" + name)


def test_a_name_pattern_reads_its_fields_and_an_impossible_date_is_no_event() -> None:
    pattern = tree.compile_pattern("mail-{date:%Y-%m-%d}.log")
    assert pattern.read("old/mail-2020-02-29.log") == {"date": dt.date(2020, 2, 29)}
    assert pattern.read("mail-2021-02-29.log") == {"date": None}  # unreadable: never due
    assert pattern.read("other.log") is None
    stamped = tree.compile_pattern("{y:%Y}/{at:%Y%m%dT%H%M%S}-*.eml")
    assert stamped.fields[1].temporal == "naive"
    assert stamped.read("2024/20240102T030405-x.eml") == {
        "y": dt.date(2024, 1, 1), "at": dt.datetime(2024, 1, 2, 3, 4, 5)}


@pytest.mark.parametrize("pattern", ["mail-{date:%Y-%q}.log", "mail-{date:%m-%d}.log",
                                     "mail.log", "mail-{modified:%Y}.log", "mail-{date.log",
                                     "{d:%Y}-{d:%Y}"])
def test_a_name_pattern_that_does_not_parse_is_refused(pattern: str) -> None:
    with pytest.raises(tree.PatternError):
        tree.compile_pattern(pattern)


@settings(max_examples=40, deadline=None)
@given(st.sets(st.lists(st.sampled_from(["a", "b", "a-b", "a.b", "ab", "B"]), min_size=1,
                        max_size=3).map("/".join), min_size=1, max_size=12),
       st.integers(min_value=0, max_value=20))
def test_the_walk_yields_files_in_key_order_and_resumes_exactly_after_a_key(
        rels: set[str], cut: int) -> None:
    files = {r for r in rels if not any(o.startswith(r + "/") for o in rels)}  # leaves only
    with tempfile.TemporaryDirectory() as tmp:
        for rel in files:
            put(Path(tmp), rel)
        walked = [f.rel for f in tree.Tree(tmp, (tree.compile_glob("**"),), ()).walk()]
        assert walked == sorted(files, key=tree.parts)
        after = walked[min(cut, len(walked) - 1)]
        assert [f.rel for f in tree.Tree(tmp, (tree.compile_glob("**"),), ()).walk(after)] \
            == walked[walked.index(after) + 1:]


def test_resuming_in_a_flat_directory_looks_only_at_the_files_after_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch resumes after the last key of the one before: in a directory of 300 files it
    reads the metadata of the files after that key, not of all 300 again (batches of a big
    flat directory would otherwise cost the square of its size). Also when the key itself
    is gone (its file was deleted by that batch)."""
    for i in range(300):
        put(tmp_path / "flat", f"m{i:04d}.log")
    walker = tree.Tree(str(tmp_path), (tree.compile_glob("**"),), ())
    seen: list[str] = []
    real = os.lstat

    def counting(name: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        seen.append(str(name))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", counting)
    for after, first in (("flat/m0289.log", 290), ("flat/m0289.gone", 289)):  # .gone < .log
        seen.clear()
        walked = [f.rel for f in walker.walk(after)]
        assert walked == [f"flat/m{i:04d}.log" for i in range(first, 300)]
        assert len(seen) <= 2 + 300 - first, seen  # the directory, the files from the key on


# -- runs ----------------------------------------------------------------------------------

def test_a_run_deletes_the_due_files_and_audits_path_size_and_sha256(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    put(root, "a.log", "alpha")
    put(root, "sub/b.log", "bravo!")
    put(root, "keep/c.log")  # excluded
    put(root, "d.txt")  # not included
    put(root, "new.log", at=AS_OF - dt.timedelta(days=3))
    policy = load_policy(policy_file(tmp_path, batch=1))
    outcome = engine.run(policy, AS_OF)
    assert outcome.rules[0].deleted == 2
    assert set(state(root)) == {"keep/c.log", "d.txt", "new.log"}
    audited = {r["key"]["path"]: r for r in records(tmp_path)}
    assert set(audited) == {"a.log", "sub/b.log"}
    assert audited["sub/b.log"]["key"] == {
        "path": "sub/b.log", "size": 6, "sha256": hashlib.sha256(b"bravo!").hexdigest()}
    assert audited["a.log"]["table_name"] == "files"
    assert dt.datetime.fromisoformat(audited["a.log"]["event_at"]) == OLD
    assert not any((root / ".retention").iterdir())  # no batch or decision left


def test_modified_is_exact_to_the_nanosecond_for_hours_and_to_the_day_for_days(
        tmp_path: Path) -> None:
    root = tmp_path / "logs"
    cut = AS_OF - dt.timedelta(hours=24)
    cut_ns = int(cut.timestamp()) * 10**9
    for name, ns in {"at.log": cut_ns, "after.log": cut_ns + 1}.items():
        put(root, name)
        os.utime(root / name, ns=(ns, ns))
    engine.run(load_policy(policy_file(tmp_path, "24 hours after modified")), AS_OF)
    assert set(state(root)) == {"after.log"}
    day_end = int(dt.datetime(2026, 6, 13, tzinfo=dt.UTC).timestamp()) * 10**9 - 1
    os.utime(root / "after.log", ns=(day_end, day_end))  # 23:59:59.999999999 on June 12
    put(root, "next.log", at=dt.datetime(2026, 6, 13, tzinfo=dt.UTC))
    (tmp_path / "policy.yaml").unlink()
    engine.run(load_policy(policy_file(tmp_path, "2 days after modified")), AS_OF)
    assert set(state(root)) == {"next.log"}


def test_a_name_pattern_dates_the_files_and_unreadable_names_are_never_due(
        tmp_path: Path) -> None:
    root = tmp_path / "logs"
    for rel in ("mail-2020-01-01.log", "x/mail-2026-06-14.log", "mail-2021-13-01.log",
                "notes.log"):
        put(root, rel, at=AS_OF)  # the modification time plays no part
    path = policy_file(tmp_path, "90 days after date",
                       extra='\n    pattern: "mail-{date:%Y-%m-%d}.log"')
    report = build_report(load_policy(path), AS_OF)["rules"][0]
    assert (report["due"], report["total"], report["unreadable_events"]) == (1, 4, 2)
    engine.run(load_policy(path), AS_OF)
    assert set(state(root)) == {"x/mail-2026-06-14.log", "mail-2021-13-01.log", "notes.log"}


def test_links_are_never_followed_out_of_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "logs", tmp_path / "outside"
    put(outside, "secret.log")
    put(outside, "dir/deep.log")
    put(root, "real.log")
    root.joinpath("link.log").symlink_to(outside / "secret.log")
    root.joinpath("linkdir").symlink_to(outside / "dir")
    before = state(outside)
    policy = load_policy(policy_file(tmp_path))
    assert build_report(policy, AS_OF)["rules"][0]["total"] == 1
    engine.run(policy, AS_OF)
    assert state(outside) == before
    assert set(state(root)) == {"link.log", "linkdir"}


def test_a_file_changed_after_selection_is_left_for_the_next_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "logs"
    put(root, "a.log")
    put(root, "b.log")
    stage = Journal.stage

    def written_meanwhile(self: Journal, batch_id: str, index: int, found: Any) -> Any:
        if found.rel == "b.log":
            with (root / "b.log").open("a") as handle:
                handle.write(" more")
        return stage(self, batch_id, index, found)

    monkeypatch.setattr(Journal, "stage", written_meanwhile)
    policy = load_policy(policy_file(tmp_path))
    assert engine.run(policy, AS_OF).rules[0].deleted == 1
    assert (root / "b.log").read_text() == "mail more"
    assert [r["key"]["path"] for r in records(tmp_path)] == ["a.log"]
    monkeypatch.undo()
    put(root, "b.log", "mail more")  # its time is old again: due
    assert engine.run(policy, AS_OF).rules[0].deleted == 1
    assert [r["key"]["path"] for r in records(tmp_path)] == ["a.log", "b.log"]


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
def test_a_failing_audit_hook_puts_every_staged_file_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool) -> None:
    """Also where the file system has no hard links (FAT, some FUSE mounts)."""
    if not links:
        def no_link(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    root = tmp_path / "logs"
    for i in range(3):
        put(root, f"f{i}.log", f"content {i}")
    before = state(root)
    append = AuditStore.append

    def full(self: AuditStore, entries: Any, conn: Any = None) -> None:
        if {e["kind"] for e in entries} == {"records"}:
            raise RuntimeError("the audit store is full")
        append(self, entries, conn)

    monkeypatch.setattr(AuditStore, "append", full)
    outcome = engine.run(load_policy(policy_file(tmp_path)), AS_OF)
    assert outcome.rules[0].status.value == "failed"
    assert state(root) == before
    assert records(tmp_path) == []
    monkeypatch.setattr(AuditStore, "append", append)
    assert engine.run(load_policy(policy_file(tmp_path)), AS_OF).rules[0].deleted == 3
    assert state(root) == {}


def test_holds_work_by_relative_path_and_a_path_leaving_the_root_is_refused(
        tmp_path: Path) -> None:
    root = tmp_path / "logs"
    put(root, "sub/held.log")
    put(root, "free.log")
    path = policy_file(tmp_path)
    placed = cli("hold", "add", str(path), "mail-log", "sub/held.log", "--reason", "court",
                 cwd=tmp_path)
    assert placed.returncode == 0, placed.stderr
    refused = cli("hold", "add", str(path), "mail-log", "../outside.log", "--reason", "x",
                  cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "path '../outside.log' is no path inside the source's path" in refused.stderr
    adapter = FilesAdapter(load_policy(path).sources["maillog"])
    for bad in ("/etc/passwd", "sub/../free.log", "./free.log", "sub//held.log"):
        with pytest.raises(UsageError):
            adapter.exists("files", [{"path": bad}])
    (tmp_path / "elsewhere").mkdir()
    moved = policy_file(tmp_path / "elsewhere")  # its path, elsewhere/logs, does not exist
    with pytest.raises(UsageError, match="does not exist"):  # hold add: one line, exit 2
        FilesAdapter(load_policy(moved).sources["maillog"]).exists("files", [{"path": "a"}])
    outcome = engine.run(load_policy(path), AS_OF)
    assert (outcome.rules[0].held, outcome.rules[0].deleted) == (1, 1)
    assert set(state(root)) == {"sub/held.log"}


def test_archive_to_moves_the_files_with_their_paths_and_never_overwrites(
        tmp_path: Path) -> None:
    root, archive = tmp_path / "logs", tmp_path / "archive"
    put(root, "sub/a.log", "new content")
    put(root, "b.log", "bee")
    put(archive, "sub/a.log", "archived earlier")
    engine.run(load_policy(policy_file(tmp_path, extra=f"\n    archive_to: {archive}")), AS_OF)
    digest = hashlib.sha256(b"new content").hexdigest()
    assert state(root) == {}
    assert {k: v[0] for k, v in state(archive).items()} == {
        "sub/a.log": b"archived earlier", f"sub/a.log.{digest[:16]}": b"new content",
        "b.log": b"bee"}
    assert {r["key"]["sha256"] for r in records(tmp_path)} == {
        digest, hashlib.sha256(b"bee").hexdigest()}


def test_report_lists_the_files_no_rule_selects_and_plan_says_what_a_run_does(
        tmp_path: Path) -> None:
    root = tmp_path / "logs"
    for rel in ("a.log", "keep/b.log", "c.txt"):
        put(root, rel)
    path = policy_file(tmp_path)
    path.write_text(path.read_text() + "ignore: [{source: maillog, table: c.txt}]\n")
    report = build_report(load_policy(path), AS_OF)
    assert report["uncovered"] == [{"source": "maillog", "table": "keep/b.log"}]
    planned = cli("plan", str(path), "--as-of", AS_OF.isoformat(), cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert "files matching **/*.log and not keep/**" in planned.stdout
    assert "modified <= 2026-03-16T23:59:59.999999+00:00" in planned.stdout
    assert not (tmp_path / "audit.db").exists() and not (root / ".retention").exists()


def test_replay_deletes_a_restored_file_again_only_when_its_content_is_the_recorded_one(
        tmp_path: Path) -> None:
    root = tmp_path / "logs"
    put(root, "a.log", "alpha")
    put(root, "b.log", "bravo")
    policy = load_policy(policy_file(tmp_path))
    engine.run(policy, AS_OF)
    put(root, "a.log", "alpha", at=AS_OF)  # restored without its time: same content
    put(root, "b.log", "a new b", at=OLD)  # the path written again: another record
    store = AuditStore(policy.audit_url)
    try:
        dry = replay.replay(policy, store, "2000-01-01", False, AS_OF)
        assert dry["rules"][0]["restored"] == {"files": 1}
        assert set(state(root)) == {"a.log", "b.log"}
        done = replay.replay(policy, store, "2000-01-01", True, AS_OF)
    finally:
        store.close()
    assert done["rules"][0]["deleted"] == {"files": 1}
    assert done["rules"][0]["left_alone"] == {"files": {"reused_key": 1}}
    assert {k: v[0] for k, v in state(root).items()} == {"b.log": b"a new b"}
    assert [r["key"]["path"] for r in records(tmp_path)] == ["a.log", "b.log", "a.log"]


# -- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "retain", "rule_extra", "line", "message"), [
    ("", "90 days after modified", "", 7, "path '{root}/missing' does not exist"),
    ('\n    pattern: "mail-{date:%Y-%q}.log"', "90 days after date", "", 10,
     "unknown directive '%q'"),
    ('\n    pattern: "mail-{date:%Y-%m-%d}}.log"', "90 days after date", "", 10,
     "'}' at 20 is not part of a field"),
    ("", "90 days after modified", "    action: {anonymize: {path: redact}}\n", 18,
     "files are deleted (or archived with 'archive_to'), never anonymized"),
    ("", "90 days after sent", "", 15, "unknown event 'sent'"),
])
def test_bad_files_input_is_one_line_with_file_line_and_rule_and_changes_nothing(
        tmp_path: Path, extra: str, retain: str, rule_extra: str, line: int,
        message: str) -> None:
    root = tmp_path / "logs"
    put(root, "a.log")
    body = POLICY.format(root=root / "missing" if "does not exist" in message else root,
                         audit=tmp_path / "audit.db", extra=extra, retain=retain,
                         batch=10) + rule_extra
    path = write_policy(tmp_path, body)
    before = state(tmp_path)
    for command in ("run", "report"):  # validate and plan compile the same way
        done = cli(command, str(path), cwd=tmp_path)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        lines = [x for x in done.stderr.splitlines() if x.startswith(str(path))]
        assert lines == [f"{path}:{line}: rule 'mail-log': "
                         + lines[0].split(": rule 'mail-log': ", 1)[1]], done.stderr
        assert message.replace("{root}", str(root)) in lines[0]
    assert state(tmp_path) == before


@pytest.mark.parametrize(("extra", "message"), [
    ("\n    archive_to: {root}/old", "archive_to '{root}/old' lies inside the source's path; "
     "archived files would be selected again"),
    ("\n    archive_to: {tmp}/nowhere", "archive_to '{tmp}/nowhere' is no directory"),
    ("\n    url: sqlite:///x.db", "a files source has no 'url'"),
])
def test_a_source_option_that_cannot_work_is_bad_input(tmp_path: Path, extra: str,
                                                      message: str) -> None:
    root = tmp_path / "logs"
    put(root, "old/a.log")
    path = policy_file(tmp_path, extra=extra.format(root=root, tmp=tmp_path))
    policy = load_policy(path)
    with engine.Session(policy) as session, pytest.raises(PolicyError) as caught:
        engine.compile_plans(session, policy.rules, AS_OF)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:10: rule 'mail-log': source 'maillog': "
        + message.format(root=root, tmp=tmp_path)]
    assert set(state(root)) == {"old/a.log"}


def test_a_glob_that_does_not_parse_names_its_line(tmp_path: Path) -> None:
    put(tmp_path / "logs", "a.log")
    path = policy_file(tmp_path)
    path.write_text(path.read_text().replace('["**/*.log"]', '["**/[a-.log"]'))
    done = cli("run", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{path}:8: rule 'mail-log': source 'maillog': include: glob '**/[a-.log': '[' " \
        "at 3 is never closed" in done.stderr
    assert not (tmp_path / "audit.db").exists()


# -- kill -9 -------------------------------------------------------------------------------

def _start(tmp: Path, path: Path, stop_at: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETENTION_", "FAULT_"))}
    env.update(FAULT_STOP_AT=stop_at, PYTHONPATH=str(FAULTPOINT))
    return subprocess.Popen([str(RETENTION), "run", str(path), "--as-of", AS_OF.isoformat()],
                            cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def _stopped(proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    stat = Path(f"/proc/{proc.pid}/stat")
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before its stop"
        if stat.read_text().rpartition(")")[2].split()[0] == "T":
            return
        time.sleep(0.01)
    raise AssertionError("the run never reached its stop")


@pytest.mark.parametrize("stop_at", ["before_target_commit", "files_decided",
                                     "after_target_commit"])
def test_kill_9_at_each_step_of_a_batch_leaves_every_deletion_recorded_once(
        tmp_path: Path, stop_at: str) -> None:
    root = tmp_path / "logs"
    due = {f"d{i:02d}.log": f"due {i}" for i in range(7)}
    for rel, text in due.items():
        put(root, rel, text)
    put(root, "young.log", at=AS_OF)
    path = policy_file(tmp_path, batch=3)
    proc = _start(tmp_path, path, stop_at)
    try:
        _stopped(proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    put(root, "d00.log", "written again", at=AS_OF)  # the application reuses the path
    done = cli("run", str(path), "--as-of", AS_OF.isoformat(), "--format", "json",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {k: v[0] for k, v in state(root).items()} == {
        "d00.log": b"written again", "young.log": b"mail"}
    audited = records(tmp_path)
    # d00.log was deleted (committed) or, rolled back, could not go back over the new file
    # and was taken by the next run's first batch: either way recorded once, old content
    assert sorted(r["key"]["path"] for r in audited) == sorted(due)
    assert [r["key"]["sha256"] for r in audited if r["key"]["path"] == "d00.log"] == [
        hashlib.sha256(b"due 0").hexdigest()]
    recovered = json.loads(done.stdout)["rules"][0]["recovered"]
    assert recovered == (0 if stop_at == "before_target_commit" else 3)
    assert list((root / ".retention").iterdir()) == []


def test_a_batch_staged_but_never_audited_is_put_back_by_the_next_run(tmp_path: Path) -> None:
    """A crash between moving files aside and writing the intents: no audit entry names
    the batch, so the rule's next batch restores the files before it selects."""
    root = tmp_path / "logs"
    put(root, "a.log", "alpha")
    policy = load_policy(policy_file(tmp_path))
    adapter = FilesAdapter(policy.sources["maillog"])
    found = next(adapter.tree.walk())
    adapter.journal.begin("mark-crashed", "mail-log", [found])
    adapter.journal.stage("mark-crashed", 0, found)
    assert not (root / "a.log").exists()
    report = build_report(policy, AS_OF)["rules"][0]
    assert report["due"] == 0  # out of sight while staged, never counted twice
    outcome = engine.run(policy, AS_OF)
    assert outcome.rules[0].deleted == 1
    assert [r["key"]["path"] for r in records(tmp_path)] == ["a.log"]
    assert state(root) == {}
