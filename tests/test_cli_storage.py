"""``omni-edit edit clip.mp4`` and ``omni-edit batch ./folder/``: local clips through the
command line, uploaded to a real S3-compatible server on loopback (docs/storage.md)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from omni_edit.emulator import Emulator

if TYPE_CHECKING:
    from conftest import EmulatorFactory, S3Server

pytestmark = pytest.mark.anyio

MEDIA = Path(__file__).parent / "data" / "media"
ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-cli-storage-SECRET"
STORAGE_SECRET = "s3-cli-secret-NEVER-SHOWN"
# The command line with the s3 extra's library made unimportable, as where it is not
# installed.
WITHOUT_EXTRA = (
    "import sys; sys.modules['obstore'] = None; from omni_edit._cli import main; sys.exit(main())"
)


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(processing_time=(0.05, 0.1), estimated_time=0.1)


@pytest.fixture
def bucket(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    name = "c-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    return s3_server.bucket(name)


def _env(emu: Emulator, s3_server: S3Server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNI_EDIT_", "AWS_"))}
    env.update(
        OMNI_EDIT_API_KEY=KEY,
        OMNI_EDIT_BASE_URL=emu.base_url,
        OMNI_EDIT_STORAGE_ENDPOINT=s3_server.endpoint,
        AWS_ACCESS_KEY_ID="AKIDCLI",
        AWS_SECRET_ACCESS_KEY=STORAGE_SECRET,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return env


async def _run(
    *args: str, env: dict[str, str], cwd: Path | None = None, code: str | None = None
) -> tuple[int, str, str]:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "omni_edit"]
    with anyio.fail_after(60):
        result = await anyio.run_process([*command, *args], env=env, cwd=cwd, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def _folder(root: Path) -> Path:
    """Five local clips: three the API takes, one 12 s long, one WebM."""
    folder = root / "clips"
    folder.mkdir()
    for name in ("clip_9_9s.mp4", "faststart.mp4", "moov_at_end.mp4", "clip_12s.mp4"):
        shutil.copyfile(MEDIA / name, folder / name)
    shutil.copyfile(MEDIA / "clip.webm", folder / "webm_inside.mp4")
    return folder


async def test_a_folder_of_clips_is_edited_and_a_rerun_uploads_and_submits_nothing(
    emu: Emulator, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    _folder(tmp_path)
    env = _env(emu, s3_server)
    # --no-split: the 12 s clip is refused, as it was before long clips were split.
    args = (
        "batch",
        "./clips",
        "--prompt",
        "warmer",
        "--no-split",
        "--storage",
        f"s3://{bucket}/in",
    )

    status, out, err = await _run(*args, env=env, cwd=tmp_path)
    assert status == 1, err
    assert out.startswith("3 of 5 inputs completed; 2 invalid"), out
    # The 12 s clip and the WebM one were refused before they were uploaded or billed.
    assert "clip clip_12s.mp4: invalid: the clip is 12.00 s long" in err
    assert "clip webm_inside.mp4: invalid: not an MP4 file (looks like WebM" in err
    assert len(emu.tasks) == 3
    objects = s3_server.object_names(bucket)
    assert len(objects) == 3
    assert all(o.startswith("in/") and o.endswith(".mp4") for o in objects)
    results = sorted(p.name.split("-")[0] for p in (tmp_path / "clips-results").iterdir())
    assert results == ["clip_9_9s", "faststart", "moov_at_end"]
    assert (tmp_path / "clips.journal.sqlite").is_file()
    assert STORAGE_SECRET not in out + err
    creates = [r for r in emu.stats.requests if r.method == "POST"]

    status, out, err = await _run(*args, env=env, cwd=tmp_path)
    assert status == 1, err
    assert "3 found done" in out
    assert "credits  0.0 reserved" in out
    assert len(emu.tasks) == 3
    assert s3_server.object_names(bucket) == objects
    assert [r for r in emu.stats.requests if r.method == "POST"] == creates


async def test_manifest_rows_and_edit_take_local_paths(
    emu: Emulator, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    manifest = folder / "m.csv"
    # The column may be named "video"; paths are the manifest's folder's, and stay in it.
    manifest.write_text(
        "video,prompt\nclip_9_9s.mp4,warmer\nfile://"
        + str(folder / "faststart.mp4")
        + ",cooler\n../clips/moov_at_end.mp4,sharper\n../../etc/passwd,steal\n"
    )
    env = _env(emu, s3_server)
    status, out, err = await _run(
        "batch", str(manifest), "--storage", f"s3://{bucket}/m", env=env, cwd=ROOT
    )
    assert status == 1, err
    assert "manifest line 5: the clip '../../etc/passwd' leads out of the manifest's folder" in err
    assert out.startswith("3 of 4 inputs completed; 1 invalid"), out
    assert len(s3_server.object_names(bucket)) == 3

    status, out, err = await _run(
        "edit", "clip_9_9s.mp4", "--prompt", "bluer", "--storage", f"s3://{bucket}/m",
        env=env, cwd=folder,
    )  # fmt: skip
    assert status == 0, err
    assert len(emu.tasks) == 4
    assert len(s3_server.object_names(bucket)) == 3  # the same clip: not uploaded again


async def test_storage_problems_are_one_line_and_bill_nothing(
    emu: Emulator, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    env = _env(emu, s3_server)
    clip = str(folder / "clip_9_9s.mp4")

    async def refused(*args: str, code: str | None = None) -> str:
        status, out, err = await _run(*args, env=env, cwd=tmp_path, code=code)
        assert status == 2, err
        # One line, told once (a batch's progress lines aside), at the end.
        lines = err.strip().splitlines()
        errors = [line for line in lines if line.startswith("omni-edit: error: ")]
        assert errors == lines[-1:], err
        assert STORAGE_SECRET not in out + err
        return lines[-1]

    # No storage configured.
    line = await refused("edit", clip, "--prompt", "warmer")
    assert "OMNI_EDIT_STORAGE" in line
    assert "pip install 'omni-edit[s3]'" in line
    # The extra not installed.
    line = await refused(
        "edit", clip, "--prompt", "warmer", "--storage", f"s3://{bucket}/x", code=WITHOUT_EXTRA
    )
    assert "pip install 'omni-edit[s3]'" in line
    # A bucket that does not exist (the batch stops at the first refusal).
    line = await refused("batch", str(folder), "--prompt", "w", "--storage", "s3://no-bucket-here")
    assert "the bucket 'no-bucket-here' does not exist" in line
    # Credentials the storage refuses.
    with s3_server.enforcing_auth():
        line = await refused("edit", clip, "--prompt", "warmer", "--storage", f"s3://{bucket}/x")
    assert "refused the credentials" in line
    assert emu.tasks == {}
    assert s3_server.object_names(bucket) == []
