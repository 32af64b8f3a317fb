"""``omni-edit demo`` end to end, run once for the whole file: its table, its results
(real videos with the media extra), and its HTML report opened in a real browser.

The browser is the system's Chromium (Debian's ``chromium`` package), driven by
playwright with ``executable_path``: playwright never downloads a browser here. Outside
CI (no ``$CI``) the browser test is skipped when either is missing; in CI it must run.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from omni_edit._cli.demo import CLIPS

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = (
    "needs Chromium and playwright: apt-get install chromium (Debian/Ubuntu), then"
    " pip install -e '.[dev]'; never `playwright install`"
)
SECONDS = dict(CLIPS)


@attrs.frozen
class DemoRun:
    folder: Path
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    cwd = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNI_EDIT_", "EVOLINK_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "omni_edit", "demo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return DemoRun(cwd / "omni-edit-demo", done.returncode, done.stdout, done.stderr)


def test_demo_runs_end_to_end_without_a_key(demo: DemoRun) -> None:
    assert demo.code == 0, demo.stderr
    results = list((demo.folder / "results").iterdir())
    assert len(results) == 21
    assert "21 of 24 edits saved" in demo.stdout
    assert "content_policy_violation" in demo.stdout
    assert "manifest line 25: prompt is missing or empty" in demo.stderr
    page = demo.folder / "report.html"
    assert demo.stdout.rstrip().endswith(f"open {page.resolve().as_uri()} in a browser.")


def test_demo_results_are_real_videos_of_their_sources(demo: DemoRun) -> None:
    av = pytest.importorskip("av", reason="needs the media extra: pip install -e '.[media]'")
    assert "placeholders" not in demo.stdout
    night = demo.folder / "results" / "harbour-at-night.mp4"  # made from harbour.mp4
    with av.open(io.BytesIO(night.read_bytes())) as container:
        assert abs(float(container.duration) / 1e6 - SECONDS["harbour.mp4"]) < 0.1
        assert container.streams.audio
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (320, 180)


def _browser_or_skip() -> Any:
    """playwright's sync API, or a skip (outside CI) saying how to get the browser."""
    ci = bool(os.environ.get("CI"))
    if not CHROMIUM.exists():
        if ci:
            pytest.fail(f"{CHROMIUM} is missing in CI: {INSTALL_HINT}")
        pytest.skip(f"no {CHROMIUM}: {INSTALL_HINT}")
    if not ci:
        pytest.importorskip("playwright", reason=INSTALL_HINT)
    from playwright import sync_api

    return sync_api


# Each player's row, class, file name and, once its metadata has loaded, its duration;
# 'error' if it cannot load, 'timeout' if nothing happened within 15 s (a load the
# page's Content-Security-Policy blocks fires no event at all).
_DURATIONS = """
() => Promise.all([...document.querySelectorAll('article.input video')].map(video => {
    const name = video.parentElement.querySelector('figcaption a').textContent;
    const row = video.closest('article').id;
    const done = () => [row, video.className, name, video.duration];
    if (video.readyState >= 1) return done();
    return new Promise(resolve => {
        video.addEventListener('loadedmetadata', () => resolve(done()));
        video.addEventListener('error', () => resolve([row, video.className, name, 'error']));
        setTimeout(() => resolve([row, video.className, name, 'timeout']), 15000);
    });
}))
"""


def test_the_report_plays_in_a_real_browser(demo: DemoRun, tmp_path: Path) -> None:
    sync_api = _browser_or_skip()
    pytest.importorskip("av", reason="needs the media extra: pip install -e '.[media]'")
    page_path = demo.folder / "report.html"
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(page_path.resolve().as_uri())
            rows = page.locator("article.input").count()
            players: list[list[Any]] = page.evaluate(_DURATIONS)
            page.screenshot(path=str(tmp_path / "report.png"))
        finally:
            browser.close()
    assert problems == []
    assert rows == 24
    results = [p for p in players if p[1] == "result"]
    sources = [p for p in players if p[1] == "source"]
    assert len(results) == 21
    assert len(sources) == 24  # every input's local copy, the refused ones' too
    for row, _, name, duration in results:
        # A result lasts as long as its source: the row's source clip.
        source = next(p for p in sources if p[0] == row)[2]
        assert isinstance(duration, (int, float)), (row, name, duration)
        assert abs(duration - SECONDS[source]) < 0.1, (row, name, duration)
    assert (tmp_path / "report.png").stat().st_size > 10_000
