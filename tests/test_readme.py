"""Every code block of the README runs, against the emulator, so the docs cannot rot.

Python blocks run as scripts with the key and base URL of an in-process emulator in
their environment. Shell blocks run line by line when a line is an ``omni-edit``
command; the two install commands at the top are what ``.ci/run`` and the fresh-clone
check execute, so they are left to those.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

if TYPE_CHECKING:
    from conftest import EmulatorFactory

pytestmark = pytest.mark.anyio

README = Path(__file__).parent.parent / "README.md"
BIN = Path(sys.executable).parent
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _blocks(lang: str) -> list[str]:
    return [body for kind, body in _FENCE.findall(README.read_text()) if kind == lang]


def _commands() -> list[str]:
    lines = []
    for block in _blocks("sh") + _blocks("console"):
        for line in block.splitlines():
            line = line.removeprefix("$ ").strip()
            if line.startswith("omni-edit "):
                lines.append(line)
    return lines


@pytest.fixture
def media(media: str) -> str:
    """A committed fixture clip on loopback, standing in for the README's example.com
    clips so that preflight really reads it."""
    return f"{media}/clip_9_9s.mp4"


@pytest.fixture
async def env(tmp_path: Path, make_emulator: EmulatorFactory) -> dict[str, str]:
    emu = await make_emulator(processing_time=(0.1, 0.3), allow_http_callbacks=True)
    return {
        **os.environ,
        "OMNI_EDIT_API_KEY": "readme-key",
        "OMNI_EDIT_BASE_URL": emu.base_url,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # This checkout's package, whatever the environment has installed.
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(README.parent), os.environ.get("PYTHONPATH")])
        ),
    }


def test_the_readme_has_the_two_fresh_machine_commands_first() -> None:
    first_two = _blocks("sh")[:2]
    assert first_two[0].strip().endswith("omni-edit demo")
    assert "pytest" in first_two[1]


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
async def test_python_block_runs(index: int, env: dict[str, str], tmp_path: Path) -> None:
    code = _blocks("python")[index]
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, check=False
        )
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize("command", _commands())
async def test_shell_command_runs(
    command: str, env: dict[str, str], media: str, tmp_path: Path
) -> None:
    # The README's own manifest example, with its clips served locally.
    manifest = next(b for b in _blocks("text") if b.startswith("video_url,"))
    local = re.sub(r"https://example\.com/\S+?\.mp4", media, manifest)
    (tmp_path / "manifest.csv").write_text(local)
    argv = [media if a == "https://example.com/clip.mp4" else a for a in shlex.split(command)]
    with anyio.fail_after(60):
        result = await anyio.run_process(argv, cwd=tmp_path, env=env, check=False)
    assert result.returncode == 0, (command, result.stderr.decode())
