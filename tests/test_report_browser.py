"""The suite report in a real browser: headless Chromium loads the self-contained HTML with
no network, runs plotly without script errors, draws an SVG in every ``.pb-plot`` and the
screenshot's plot areas are not blank.

Needs ``chromium`` (Debian: ``apt-get install -y chromium``): skipped when absent, except
under CI=true, where it fails (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from perpbt.report import write_report
from perpbt.suite import run_suite

WIDTH = 1400
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-extensions", "--hide-scrollbars",
         "--force-device-scale-factor=1", "--virtual-time-budget=4000"]
SUITE = {
    "suite": {"name": "browser", "margins": ["isolated", "cross"], "leverage": [5]},
    "datasets": {"crash": {"scenario": "flash_crash", "seed": 7}},
    "strategies": {"ma_cross": {"fast": [12, 24], "slow": [48, 96]},
                   "funding_carry": {}},
}
PLOT_DIV = re.compile(r'<div class="pb-plot" id="([^"]+)"([^>]*)>')


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    reason = "chromium not installed (apt-get install -y chromium) for the browser test"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    result = run_suite(SUITE, progress=False)
    baseline = result.rows.copy()
    baseline.loc[0, "sharpe"] += 1.0
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(result, path, baseline=baseline)
    return path


def _browse(chromium: str, page: Path, *args: str, height: int = 2000):
    proc = subprocess.run(
        [chromium, *FLAGS, f"--window-size={WIDTH},{height}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, cwd=page.parent,
        env={**os.environ, "HOME": str(page.parent)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def dom(chromium, page) -> tuple[str, str]:
    proc = _browse(chromium, page, "--dump-dom", "--enable-logging=stderr", "--v=0")
    return proc.stdout, proc.stderr


def _plots(html: str) -> list[tuple[str, str, str]]:
    """(id, attributes, content up to the next plot) of every .pb-plot div."""
    found = list(PLOT_DIV.finditer(html))
    ends = [m.start() for m in found[1:]] + [len(html)]
    return [(m.group(1), m.group(2), html[m.end():end]) for m, end in zip(found, ends)]


def test_plotly_renders_every_plot_without_script_errors(dom, page):
    html, log = dom
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not [line for line in console if "Uncaught" in line or "Error" in line], console
    root = re.search(r"<html[^>]*>", html).group(0)
    assert "data-pb-errors" not in root, f"window.onerror caught: {root}"
    plots = _plots(html)
    ids = [p[0] for p in plots]
    assert ids == ["pb-equity-crash", "pb-heatmap-ma_cross", "pb-funding-crash"]
    for plot_id, _, content in plots:
        assert '<svg class="main-svg"' in content, f"{plot_id}: plotly drew no SVG"
    assert "pb-baseline-table" in html and "pb-stats-table" in html


def test_screenshot_plot_areas_are_not_blank(chromium, dom, page):
    from PIL import Image

    html, _ = dom
    height = int(re.search(r'data-pb-height="(\d+)"', html).group(1))
    shot = page.parent / "shot.png"
    _browse(chromium, page, f"--screenshot={shot}", height=height)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (height, WIDTH)
    for plot_id, attrs, _ in _plots(html):
        x, y, w, h = map(int, re.search(r'data-pb-rect="([\d,]+)"', attrs).group(1).split(","))
        assert w > 300 and h > 200, (plot_id, w, h)
        region = pixels[y:y + h, x:x + w]
        ink = (region < 235).any(axis=2).mean()  # anything not white: lines, text, cells
        colour = (region.max(axis=2) - region.min(axis=2) > 60).sum()  # traces, not grey axes
        assert ink > 0.01, f"{plot_id}: region {x},{y},{w}x{h} is blank ({ink:.2%} ink)"
        assert colour > 500, f"{plot_id}: no coloured pixels (traces) in the region"
