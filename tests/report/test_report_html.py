"""The html report as a browser shows it: headless Chromium (Debian's ``chromium``)
loads the page ``retention report --format html`` wrote, and the test reads the DOM it
built and the screenshot it took.

Without chromium the test is skipped locally and fails under ``CI=true`` (``.ci/run``
installs it). ``RETENTION_UPDATE_GOLDEN=1`` also copies the screenshot to
``docs/report.png``, the one the README shows.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.cli.test_cli import WEBSHOP, WEBSHOP_RULES, Shop, _copy, template  # noqa: F401
from tests.support import missing

DOCS = Path(__file__).parents[2] / "docs"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
WINDOW = (1400, 1800)  # the screenshot's size in pixels
RUN_AS_OF = "2026-02-28T12:00:00+00:00"  # the enforced run the report shows as last run
REPORT_AS_OF = "2026-04-30T12:00:00+00:00"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium is not installed (apt-get install chromium)")
    return found


def _browse(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium with a fresh profile and nothing fetched but the page itself."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def page(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The web shop after one enforced run, reported later as html with samples."""
    tmp = tmp_path_factory.mktemp("html")
    shop: Shop = _copy(template, tmp / "shop")
    conn = sqlite3.connect(shop.url.removeprefix("sqlite:///"))
    conn.execute("CREATE TABLE legacy_customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    ran = shop.run("run", WEBSHOP, "--as-of", RUN_AS_OF, "--format", "json")
    assert ran.returncode == 0, ran.stderr
    target = tmp / "report.html"
    proc = shop.run("report", WEBSHOP, "--as-of", REPORT_AS_OF, "--format", "html",
                    "--samples", "3", "-o", str(target))
    assert proc.returncode == 0, proc.stderr
    return target


def test_the_html_report_is_one_page_that_fetches_nothing(page: Path) -> None:
    """Self-contained: style inline, no script, no link, image or font from elsewhere,
    and a print style."""
    text = page.read_text(encoding="utf-8")
    assert "<style>" in text and "@media print" in text
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(|src=", text, re.I)
    assert not re.search(r"https?://", text)


def test_chromium_renders_every_rule_the_totals_the_coverage_and_the_sql(
        page: Path, tmp_path: Path) -> None:
    """The DOM Chromium builds: a summary row per rule, the totals row, the uncovered
    table, each rule's last run, and the statements of each rule's plan."""
    proc = _browse(tmp_path, "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr
    dom = proc.stdout
    summary = _element(dom, "section", "summary")
    for rule in WEBSHOP_RULES:
        assert f'<tr data-rule="{rule}">' in summary, rule
        assert f'id="rule-{rule}"' in dom and f'<div class="plan" data-rule="{rule}">' in dom
    totals = _element(dom, "tr", "totals")
    assert "all 6 rules" in totals and re.findall(r'class="num">\d+</td>', totals)
    assert "legacy_customers" in _element(dom, "div", "uncovered")
    rules = _element(dom, "section", "rules")
    assert rules.count("Last run</dt>") == len(WEBSHOP_RULES)
    assert "ok, " in rules and " deleted" in rules  # the run of RUN_AS_OF
    sql = _element(dom, "section", "sql")
    assert "DELETE FROM order_lines" in sql and "DELETE FROM orders" in sql
    assert "UPDATE visits" in sql
    assert "due_next" not in dom and "would_stop" not in dom


def test_chromium_takes_a_screenshot_and_prints_the_page(page: Path, tmp_path: Path) -> None:
    """A screenshot of WINDOW pixels that is not blank, and a PDF of the print layout."""
    shot = tmp_path / "report.png"
    proc = _browse(tmp_path, f"--screenshot={shot}",
                   f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars", page.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr
    width, height, colours = _png(shot.read_bytes())
    assert (width, height) == WINDOW
    assert colours > 32, "the screenshot is (nearly) blank"
    pdf = tmp_path / "report.pdf"
    printed = _browse(tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer",
                      page.as_uri())
    printed_bytes = pdf.read_bytes() if pdf.exists() else b""
    assert printed.returncode == 0 and printed_bytes.startswith(b"%PDF"), printed.stderr
    assert len(re.findall(rb"/Type\s*/Page(?!s)", printed_bytes)) >= 2  # A4 pages
    if os.environ.get("RETENTION_UPDATE_GOLDEN"):
        DOCS.mkdir(exist_ok=True)
        shutil.copy(shot, DOCS / "report.png")


def _element(dom: str, tag: str, element_id: str) -> str:
    """The text of the first ``<tag id="element_id">`` up to its closing tag (no nesting
    of the same tag inside the elements this test reads)."""
    found = re.search(rf'<{tag}\b[^>]*\bid="{element_id}"[^>]*>(.*?)</{tag}>', dom, re.S)
    assert found is not None, f"no <{tag} id={element_id!r}> in the DOM"
    return found.group(1)


def _png(data: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct byte values of the decoded pixel rows."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    at, idat = 8, b""
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at:at + 4]), data[at + 4:at + 8]
        if kind == b"IDAT":
            idat += data[at + 8:at + 8 + length]
        at += 12 + length
    return width, height, len(set(zlib.decompress(idat)))
