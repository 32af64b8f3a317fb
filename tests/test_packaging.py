"""The package as installed: one version everywhere, ``omni-edit --version``,
``python -m omni_edit``, and the LICENSE the metadata names."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import omni_edit
from omni_edit._cli import main
from omni_edit._http.transport import USER_AGENT

ROOT = Path(__file__).parent.parent
OMNI_EDIT = str(Path(sys.executable).parent / "omni-edit")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


def test_version_is_the_installed_distributions() -> None:
    assert omni_edit.__version__ == importlib.metadata.version("omni-edit")


def test_user_agent_carries_the_version() -> None:
    assert USER_AGENT.startswith(f"omni-edit/{omni_edit.__version__} ")


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"omni-edit {omni_edit.__version__}\n"


def test_console_script_prints_the_version() -> None:
    result = _run(OMNI_EDIT, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"omni-edit {omni_edit.__version__}\n"


def test_python_m_runs_the_command_line() -> None:
    result = _run(sys.executable, "-m", "omni_edit", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: omni-edit ")
    assert "demo" in result.stdout


def test_python_m_passes_the_exit_status_on() -> None:
    result = _run(sys.executable, "-m", "omni_edit")  # no command: a usage error
    assert result.returncode == 2
    assert "required: COMMAND" in result.stderr


def test_import_runs_no_command_line() -> None:
    probe = (
        "import sys, omni_edit; "
        "print(sorted(m for m in sys.modules "
        "if m == 'omni_edit.__main__' or m.split('.')[:2] == ['omni_edit', '_cli']))"
    )
    result = _run(sys.executable, "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_license_file() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 The omni_edit authors" in text
