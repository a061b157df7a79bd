"""The report page in a real headless Chromium: no console errors, every figure decoded, a
screenshot. Skips where no Chromium is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from activemil.report import report

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                       "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed "
                                "(apt-get install -y chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    profile.mkdir()
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def _console_errors(stderr: str) -> list[str]:
    """Console lines (the page logs nothing, so any is a problem; Chromium logs console.error
    at INFO level) and uncaught exceptions."""
    return [ln for ln in stderr.splitlines()
            if ":CONSOLE" in ln or "Uncaught" in ln or "Failed to load resource" in ln]


def test_the_console_check_sees_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><script>console.error("boom"); nope();'
                   "</script></body></html>")
    res = _chromium(tmp_path, "--virtual-time-budget=2000", "--dump-dom", bad.as_uri())
    errs = _console_errors(res.stderr)
    assert any("boom" in e for e in errs) and any("Uncaught" in e for e in errs)


@pytest.mark.parametrize("which", ["campaign", "simulation"])
def test_report_loads_in_chromium(which, campaign_dir, simulation_dir, tmp_path):
    src = campaign_dir if which == "campaign" else simulation_dir
    page = report(src, tmp_path / f"{which}.html")
    text = page.read_text()
    n_img = text.count("<img ")
    url = page.resolve().as_uri()
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not _console_errors(dom.stderr), _console_errors(dom.stderr)
    m = re.search(r"figures-decoded (\d+)/(\d+)", dom.stdout)
    assert m, "the page's figure check did not run"
    assert int(m.group(2)) == n_img and int(m.group(1)) == n_img > 0
    shot = tmp_path / f"{which}.png"
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", url)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not _console_errors(res.stderr)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
