"""A real browser (headless Chromium) on the dashboard and on the report, offline.

Skipped when no Chromium is installed; on Debian: apt-get install -y chromium.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from search import report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Long enough for the React app to fetch the study and render; virtual time, so rarely waited.
VIRTUAL_TIME_MS = 10000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> str:
    """The Chromium binary: $CHROMIUM, else the first of BROWSERS on PATH."""
    found = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        pytest.skip("no Chromium found (set $CHROMIUM or apt-get install -y chromium)")
    return found


def chromium(browser: str, profile: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on `url` with `args`; a fresh profile keeps runs independent."""
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        *args,
        url,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def visible_text(dom: str) -> str:
    """The DOM's text with scripts, styles and tags removed and whitespace collapsed."""
    dom = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", dom, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom))).strip()


def test_dashboard_trials_page_renders(browser, dashboard, real_study, tmp_path):
    study = real_study.load()
    page = f"{dashboard.base}/dashboard/studies/{study._study_id}/trials"
    dom = chromium(browser, tmp_path / "profile", page, "--dump-dom").stdout
    text = visible_text(dom)
    # The header names the study; the trial list counts and names every trial.
    assert f"{real_study.name} (id={study._study_id})" in text
    assert f"{len(study.trials)} Trials" in text
    for trial in study.trials:
        assert re.search(rf"\bTrial {trial.number}\b", text)
    assert "Best Trial" in text

    shot = tmp_path / "dashboard-trials.png"
    chromium(browser, tmp_path / "profile", page, f"--screenshot={shot}", "--window-size=1400,900")
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1400, 900)
        # A blank or error page has a handful of colours; the rendered app has many.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50
    print(f"dashboard screenshot: {shot}")


def test_report_renders_offline(browser, real_study, tmp_path):
    out = tmp_path / "report.html"
    report.main(["--study", real_study.name, "--storage", real_study.url, "-o", str(out)])
    page = out.read_text(encoding="utf-8")
    figures = page.count('class="plotly-graph-div"')
    # No network: only the embedded plotly.js can draw the figures.
    dom = chromium(
        browser,
        tmp_path / "profile",
        out.as_uri(),
        "--dump-dom",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
    ).stdout
    # Each drawn figure holds plotly's SVG root (class "main-svg", several per figure).
    drawn = len(re.findall(r'<div[^>]*class="plot-container plotly"', dom))
    assert drawn == figures
    assert "main-svg" in dom
