"""A Python without the media extra, for subprocess tests: importing ``av`` fails."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Put in a folder as sitecustomize.py: every import of av fails, as on a machine
# without `omni-edit[media]`.
_BLOCK_AV = """\
import sys


class _NoAv:
    def find_spec(self, name, path=None, target=None):
        if name == "av" or name.startswith("av."):
            raise ModuleNotFoundError("No module named 'av'", name="av")


sys.meta_path.insert(0, _NoAv())
"""


def env_without_av(folder: Path) -> dict[str, str]:
    """An environment whose Python cannot import av (a sitecustomize in ``folder``
    blocks it) and imports this checkout's omni_edit."""
    (folder / "sitecustomize.py").write_text(_BLOCK_AV)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO_ROOT)])}
