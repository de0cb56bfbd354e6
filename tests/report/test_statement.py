"""retention schedule: the policy as the retention schedule a privacy statement shows.

Markdown in English and Dutch is compared with golden files (``tests/report/golden/``;
``RETENTION_UPDATE_GOLDEN=1`` rewrites them after a deliberate change of wording). The
html page carries the same facts, cell for cell, escaped. A company's own templates
come first; a language, template or directory that cannot be used is bad input.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from retention.policies import examples

from retention.cli.commands import schedule_command
from retention.errors import UsageError
from retention.policy.load import load_policy, load_policy_text
from retention.policy.needs import Need
from retention.policy.rules import Policy
from retention.report.statement import LANGUAGES, checked, render_schedule

RETENTION = Path(sys.executable).with_name("retention")
REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden")
FORMS = GOLDEN / "forms.yaml"
HOSTILE = """\
policy: "<b>shop</b>"
sources:
  shop: {adapter: sql, url: "${NEVER_SET}"}
rules:
  "x\\"><img src=x onerror=alert(1)>":
    table: orders
    retain: 1 day after created_at
    where: {status: "<script>alert(2)</script>"}
    description: "<script>alert(1)</script> | pipes & ampersands"
    legal_basis: "line one\\nline two | <i>three</i>"
"""


def policy_of(path: Path) -> Policy:
    return load_policy(path, env={}, need=Need.NOTHING)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # nothing the policy names
    return subprocess.run([str(RETENTION), "schedule", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", ["webshop", "forms"])
def test_markdown_matches_the_golden_file(name: str, lang: str) -> None:
    """Every rule of webshop.yaml and every where form, action and schedule, in words."""
    path = examples.policy_path("webshop") if name == "webshop" else FORMS
    text = render_schedule(policy_of(path), "md", lang)
    golden = GOLDEN / f"{name}.{lang}.md"
    if os.environ.get("RETENTION_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_the_webshop_promises_read_as_the_privacy_statement_says_them() -> None:
    """The sentences of the shop's statement, in both languages."""
    en = render_schedule(policy_of(examples.policy_path("webshop")), "md", "en")
    nl = render_schedule(policy_of(examples.policy_path("webshop")), "md", "nl")
    assert ("| orders with status completed | until 6 months after completion, then 7 more "
            "years | deleted with its order lines |") in en
    assert ("| bestellingen met status completed | tot 6 maanden na voltooiing, daarna nog "
            "7 jaar | verwijderd, met de bijbehorende orderregels |") in nl
    assert "| until unsubscribed |" in en and "| tot afmelding |" in nl


class Cells(HTMLParser):
    """The text of every table cell, row by row, and every start tag seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.tags: list[str] = []
        self.rule_names: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
            self.rule_names += [v or "" for k, v in attrs if k == "data-rule"]
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def cells(html: str) -> Cells:
    parser = Cells()
    parser.feed(html)
    parser.close()
    return parser


def md_rows(md: str) -> list[list[str]]:
    """The cells of a Markdown table, unescaped, header first (the --- line left out)."""
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    split = [[c.strip() for c in line.strip("|").replace("\\|", "\0").split("|")]
             for line in rows]
    return [[c.replace("\0", "|").replace("&lt;", "<") for c in row] for row in split]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", ["webshop", "forms"])
def test_html_has_a_row_per_rule_with_the_same_cells_as_markdown(name: str, lang: str) -> None:
    """One self-contained page (inline style, no link or script) with the same facts."""
    policy = policy_of(examples.policy_path("webshop") if name == "webshop" else FORMS)
    page = cells(render_schedule(policy, "html", lang))
    assert page.rows == md_rows(render_schedule(policy, "md", lang))
    assert len(page.rows) == len(policy.rules) + 1
    assert page.rule_names == [r.name for r in policy.rules]
    assert "style" in page.tags and not {"script", "link", "img"} & set(page.tags)


def test_hostile_policy_text_is_escaped_in_html_and_markdown() -> None:
    """Tags in a description, a where value or a rule name stay text; a | or a line break
    stays inside its Markdown cell."""
    policy = load_policy_text(HOSTILE, "hostile.yaml", {}, need=Need.NOTHING)
    page = cells(render_schedule(policy, "html"))
    assert not {"script", "img", "b", "i"} & set(page.tags)
    row = page.rows[1]
    assert row[0] == "<script>alert(1)</script> | pipes & ampersands"
    assert row[1] == "orders with status <script>alert(2)</script>"
    assert " ".join(row[4].split()) == "line one line two | <i>three</i>"  # as a browser shows it
    assert page.rule_names == ['x"><img src=x onerror=alert(1)>']
    md = render_schedule(policy, "md")
    assert "<script" not in md and "<i>" not in md and "<b>" not in md
    header, body = md_rows(md)
    assert len(body) == len(header) == 7
    assert body[0] == "<script>alert(1)</script> | pipes & ampersands"


def test_own_templates_override_one_file_and_keep_the_rest(tmp_path: Path) -> None:
    """A company's glossary.j2 names the event in its words; every other file is shipped."""
    own = tmp_path / "words"
    own.mkdir()
    (own / "glossary.j2").write_text(
        '{% set events = {"completion": "the order is completed"} %}\n'
        '{% set tables = {"order_lines": "order lines"} %}\n', encoding="utf-8")
    proc = cli(str(examples.policy_path("webshop")), "--templates", str(own), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| until 6 months after the order is completed, then 7 more years |" in proc.stdout
    assert proc.stdout.startswith("# Retention schedule: webshop, version 2018-05-25")


def test_own_layout_sees_the_words_of_the_language(tmp_path: Path) -> None:
    """Any file may be replaced, the layout too; it imports the shipped words.j2."""
    (tmp_path / "schedule.md.j2").write_text(
        '{% import "words.j2" as w %}{% for r in rules %}{{ r.name }}: {{ w.kept(r) | squash }}\n'
        '{% endfor %}', encoding="utf-8")
    proc = cli(str(examples.policy_path("webshop")), "--lang", "nl", "--templates",
               str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "orders: tot 6 maanden na voltooiing, daarna nog 7 jaar"


@pytest.mark.parametrize(("files", "args", "message"), [
    ({}, ["--lang", "de"], "Invalid value for '--lang': 'de' is not one of 'en', 'nl'"),
    ({}, ["--templates", "{dir}/missing"], "Directory '{dir}/missing' does not exist"),
    ({"words.j2": "{% macro title(p) %}{{ p.name }{% endmacro %}"}, [],
     "{dir}/own/words.j2:1: template error: unexpected '}'"),
    ({"schedule.md.j2": "line one\n{{ no_such_name }}\n"}, [],
     "{dir}/own/schedule.md.j2:2: template error: UndefinedError: 'no_such_name' is "
     "undefined"),
    ({"schedule.md.j2": '{% include "missing.j2" %}'}, [],
     "template 'missing.j2' not found (searched {dir}/own, "),
])
def test_an_unusable_language_or_template_is_one_line_and_exit_2(
        tmp_path: Path, files: dict[str, str], args: list[str], message: str) -> None:
    own = tmp_path / "own"
    own.mkdir()
    for name, text in files.items():
        (own / name).write_text(text, encoding="utf-8")
    argv = [a.replace("{dir}", str(tmp_path)) for a in args]
    if files:
        argv += ["--templates", str(own)]
    proc = cli(str(examples.policy_path("webshop")), *argv, cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and proc.stdout == ""
    assert message.replace("{dir}", str(tmp_path)) in proc.stderr


def test_the_command_offers_exactly_the_shipped_languages() -> None:
    lang = next(p for p in schedule_command.params if p.name == "lang")
    assert tuple(getattr(lang.type, "choices", ())) == LANGUAGES
    for shipped in LANGUAGES:
        assert (REPO / "retention/report/templates/schedule" / shipped / "words.j2").is_file()
    with pytest.raises(UsageError, match="--lang 'fr'"):
        render_schedule(policy_of(FORMS), "md", "fr")


def test_schedule_command_writes_a_file_with_output(tmp_path: Path) -> None:
    out = tmp_path / "schedule.html"
    proc = cli(str(examples.policy_path("webshop")), "--format", "html", "--lang", "nl",
               "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert '<html lang="nl">' in out.read_text(encoding="utf-8")


@given(st.integers(0, 23), st.integers(0, 59))
def test_a_cron_expression_of_one_daily_slot_reads_as_daily(hour: int, minute: int) -> None:
    """'M H * * *' and 'daily at HH:MM' are the same schedule, and say so."""
    phrase = checked(f"daily at {hour:02d}:{minute:02d}")
    assert checked(f"{minute} {hour} * * *") | {"text": None} == phrase | {"text": None}
    assert phrase["kind"] == "daily" and phrase["time"] == f"{hour:02d}:{minute:02d}"


@given(st.integers(1, 200), st.sampled_from(["seconds", "minutes", "hours"]))
def test_an_interval_reads_as_the_same_number_of_seconds(amount: int, unit: str) -> None:
    """'every N units' in words counts exactly as many seconds as the daemon waits."""
    found = checked(f"every {amount} {unit}")
    size = {"second": 1, "minute": 60, "hour": 3600}
    assert found["kind"] == "interval"
    assert found["amount"] * size[found["unit"]] == amount * size[unit.removesuffix("s")]


@pytest.mark.parametrize(("phrase", "kind", "extra"), [
    ("hourly", "hourly", {}),
    ("weekly on sunday at 02:30", "weekly", {"weekday": 6, "time": "02:30"}),
    ("0 4 * * sun", "weekly", {"weekday": 6, "time": "04:00"}),
    ("monthly on day 31", "monthly", {"day": 31, "time": "00:00"}),
    ("0 3 * * 0", "cron", {"text": "0 3 * * 0"}),  # a weekday number: said as written
    ("*/5 * * * *", "cron", {"text": "*/5 * * * *"}),
    ("0 3 1 jan *", "cron", {"text": "0 3 1 jan *"}),
])
def test_schedules_read_as_words_or_as_the_cron_expression(
        phrase: str, kind: str, extra: dict[str, object]) -> None:
    found = checked(phrase)
    assert found["kind"] == kind
    assert {k: found[k] for k in extra} == extra


def test_the_wheel_ships_the_templates(tmp_path: Path) -> None:
    """`pip wheel .` holds every template beside statement.py, and Jinja2 as a dependency."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
        ".hypothesis", "*.db", "tests", "bench"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, timeout=300,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("retention-*.whl")
    archive = zipfile.ZipFile(wheel)
    shipped = sorted(str(p.relative_to(REPO)) for p in
                     (REPO / "retention/report/templates").rglob("*.j2"))
    assert len(shipped) == 6
    assert set(shipped) <= set(archive.namelist())
    metadata = next(n for n in archive.namelist() if n.endswith("/METADATA"))
    assert "Requires-Dist: Jinja2>=3.1" in archive.read(metadata).decode()
