"""``--report report.html``: one self-contained page per batch, safe with hostile input
and movable with its results (docs/media.md#the-html-report)."""

from __future__ import annotations

import os
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import anyio
import pytest

if TYPE_CHECKING:
    from conftest import EmulatorFactory

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_PROMPT = "<script>alert('p')</script> & \"quoted\" make it warmer"


class _Links(HTMLParser):
    """Every tag, and every link or media source, of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.metas: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append(value)
        if tag == "meta":
            self.metas.append(dict(attrs))


async def test_the_page_escapes_everything_links_relatively_and_moves(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(processing_time=(0.0, 0.05))
    run = tmp_path / "run"
    run.mkdir()
    manifest = run / "m.csv"
    manifest.write_text(
        "video_url,prompt,output\n"
        f'https://media.example.com/a.mp4,"{HOSTILE_PROMPT.replace(chr(34), chr(34) * 2)}",'
        '"x""><script>y.mp4"\n'
        "javascript:alert(1),make it cooler,\n"
        "https://media.example.com/b.mp4,make it cooler,javascript:z.mp4\n"
    )
    env = {
        **os.environ,
        "OMNI_EDIT_API_KEY": "html-key",
        "OMNI_EDIT_BASE_URL": emu.base_url,
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "omni_edit", "batch", str(manifest), "--no-preflight"]
    argv += ["--out-dir", str(run / "results"), "--report", str(run / "report.html")]
    with anyio.fail_after(30):
        done = await anyio.run_process(argv, env=env, check=False)
    stdout = done.stdout.decode()
    assert done.returncode == 1, done.stderr.decode()  # the javascript: row is invalid
    assert f"open it in a browser: {(run / 'report.html').as_uri()}" in stdout

    page = (run / "report.html").read_text()
    parsed = _Links()
    parsed.feed(page)
    assert "script" not in parsed.tags
    assert parsed.tags.count("article") == 3
    assert "&lt;script&gt;alert(&#x27;p&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;" in page
    csp = next(m for m in parsed.metas if m.get("http-equiv") == "Content-Security-Policy")
    assert "script-src 'none'" in (csp["content"] or "")
    assert "<dt>inputs</dt><dd>3</dd>" in page
    assert "<dt>completed</dt><dd>2</dd>" in page
    assert "<dt>invalid</dt><dd>1</dd>" in page
    # Only our relative paths and the inputs' https URLs are links: never javascript:.
    local = [link for link in parsed.links if link.startswith("./")]
    remote = [link for link in parsed.links if not link.startswith("./")]
    assert len(local) == 4  # two results, each a link and a player
    assert set(remote) == {"https://media.example.com/a.mp4", "https://media.example.com/b.mp4"}
    assert not any("javascript:" in link.lower() for link in parsed.links)

    # The folder moves with its page: every relative link still lands.
    moved = tmp_path / "elsewhere" / "moved"
    shutil.move(run, moved)
    for link in local:
        assert (moved / unquote(link)).is_file(), link
    assert sorted(p.name for p in moved.iterdir()) == [
        "m.csv",
        "m.csv.journal.sqlite",
        "report.html",
        "results",
    ]
