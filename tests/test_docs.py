"""The pages under ``docs/`` stay true: their Python runs and their links land.

Every Python block of every ``docs/*.md`` runs as a script against an in-process
emulator, as ``test_readme.py`` runs the README's. Every relative link in the README and
in the docs must name a file of the repository, and a link with a ``#fragment`` into a
Markdown file must name one of its headings, slugged as GitHub slugs them: code comments
cite these anchors (``docs/reliability.md#retries``), so a renamed heading must fail here.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from omni_edit.emulator import Emulator

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
BIN = Path(sys.executable).parent
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _python_blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        blocks = [body for kind, body in _FENCE.findall(page.read_text()) if kind == "python"]
        found += [(page.name, n, body) for n, body in enumerate(blocks)]
    return found


def _prose(text: str) -> str:
    """The text without fenced blocks and inline code, where no link or heading lives."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: link text kept, markup and punctuation
    dropped, lower case, each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor the headings of ``page`` define; a repeated slug gets -1, -2, ..."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path, text: str | None = None) -> list[str]:
    """The relative links of ``page`` (or of ``text``, read as if it were ``page``) that
    name no file, or no heading of their file."""
    text = _prose(page.read_text() if text is None else text)
    problems = []
    for target in _LINK.findall(text) + _REFERENCE.findall(text):
        if _SCHEME.match(target) or target.startswith("//"):
            continue
        path_part, _, fragment = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page.resolve()
        if not linked.is_relative_to(ROOT.resolve()):
            problems.append(f"{target}: outside the repository")
        elif not linked.exists():
            problems.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            problems.append(f"{target}: no heading #{fragment} in {linked.name}")
    return problems


@pytest.fixture
async def env() -> AsyncIterator[dict[str, str]]:
    async with Emulator(processing_time=(0.1, 0.3), allow_http_callbacks=True) as emu:
        yield {
            **os.environ,
            "OMNI_EDIT_API_KEY": "docs-key",
            "OMNI_EDIT_BASE_URL": emu.base_url,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }


def test_the_docs_hold_a_runnable_example() -> None:
    assert _python_blocks(), "docs/*.md should show at least one runnable Python example"


@pytest.mark.parametrize(
    "code", [b[2] for b in _python_blocks()], ids=[f"{p}-{n}" for p, n, _ in _python_blocks()]
)
async def test_python_block_runs(code: str, env: dict[str, str], tmp_path: Path) -> None:
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, check=False
        )
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", *PAGES], ids=lambda p: str(p.relative_to(ROOT))
)
def test_relative_links_land(page: Path) -> None:
    assert broken_links(page) == []


def test_the_docs_index_and_the_readme_link_every_page() -> None:
    for index in (DOCS / "README.md", ROOT / "README.md"):
        targets = {t.partition("#")[0] for t in _LINK.findall(_prose(index.read_text()))}
        named = {(index.parent / t).resolve() for t in targets if t}
        missing = [p.name for p in PAGES if p.name != "README.md" and p.resolve() not in named]
        assert missing == [], f"{index.relative_to(ROOT)} does not link {missing}"


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Retries", "retries"),
        ("Callback URLs", "callback-urls"),
        ("What the SDK uses", "what-the-sdk-uses"),
        ("`submit` and `wait`", "submit-and-wait"),
        ("Retry-After", "retry-after"),
        ("Read [the docs](api.md) first", "read-the-docs-first"),
    ],
)
def test_slugs_follow_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_broken_link_is_caught() -> None:
    text = (
        "[fine](reliability.md#retries) [gone](reliability.md#no-such-heading)\n"
        "[missing](no-such-page.md) [out](../../elsewhere.md) [web](https://example.com/x)\n"
        "`[code](not-a-link.md)`\n"
    )
    assert broken_links(DOCS / "index.md", text) == [
        "reliability.md#no-such-heading: no heading #no-such-heading in reliability.md",
        "no-such-page.md: no such file",
        "../../elsewhere.md: outside the repository",
    ]
