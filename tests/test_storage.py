"""Local clips uploaded to S3-compatible storage: against a real S3 server on loopback
(moto's server mode, started once for the session), with real presigning, and the
emulator fetching the presigned URLs as the API would (docs/storage.md)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest

import omni_edit as oe
from omni_edit.emulator import Emulator

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory, S3Server

pytestmark = pytest.mark.anyio

MEDIA = Path(__file__).parent / "data" / "media"
SECRET = "s3-secret-NEVER-SHOWN"


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials as users give them: the standard variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("OMNI_EDIT_STORAGE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)


@pytest.fixture
def bucket(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    # One bucket per test: what a test stores is its own.
    name = "t-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    return s3_server.bucket(name)


@pytest.fixture
def storage(s3_server: S3Server, bucket: str) -> oe.S3Storage:
    return oe.S3Storage(bucket, "in", endpoint_url=s3_server.endpoint)


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(processing_time=(0.05, 0.05))


def _copy(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copyfile(MEDIA / name, target)
    return target


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_local_clip_is_uploaded_once_and_sent_as_a_url_the_emulator_fetches(
    emu: Emulator,
    make_client: ClientFactory,
    storage: oe.S3Storage,
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clip = _copy("clip_9_9s.mp4", tmp_path)
    client = await make_client(emu, storage=storage)

    task = await client.submit(clip, "warmer")  # a Path
    assert (await client.wait(task)).status is oe.TaskStatus.COMPLETED
    assert s3_server.object_names(bucket) == [f"in/{_sha(clip)}.mp4"]

    again = await client.upload(f"file://{clip}")  # a file:// URL: the same object
    assert not again.uploaded
    assert again.sha256 == _sha(clip)
    assert again.size == clip.stat().st_size
    assert "X-Amz-Signature=" in again.url
    assert "X-Amz-Expires=21600" in again.url  # 6 hours by default
    assert "REDACTED" in repr(again)
    assert "X-Amz-Signature" not in repr(again)
    async with aiohttp.ClientSession() as session, session.get(again.url) as answer:
        assert await answer.read() == clip.read_bytes()  # anyone may GET it
    # A relative path works too (the working directory's).
    monkeypatch.chdir(tmp_path)
    task = await client.submit("clip_9_9s.mp4", "cooler")
    assert (await client.wait(task)).status is oe.TaskStatus.COMPLETED
    assert len(s3_server.object_names(bucket)) == 1


async def test_clips_the_api_would_refuse_are_refused_before_any_upload(
    emu: Emulator,
    make_client: ClientFactory,
    storage: oe.S3Storage,
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
) -> None:
    client = await make_client(emu, storage=storage)
    for name, reason in (
        ("clip_10_1s.mp4", "10.10 s long"),
        ("clip.webm", "WebM"),
        ("empty.mp4", "empty"),
    ):
        with pytest.raises(oe.ValidationError, match=reason):
            await client.submit(_copy(name, tmp_path), "warmer")
    with pytest.raises(oe.ValidationError, match="could not read the video file"):
        await client.submit(tmp_path / "missing.mp4", "warmer")
    assert s3_server.object_names(bucket) == []
    assert client.requests_sent == 0


async def test_an_expired_or_unreachable_url_fails_at_the_emulator(
    emu: Emulator,
    make_client: ClientFactory,
    storage: oe.S3Storage,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    # The emulator fetches what it is given: a URL whose object is not there is
    # refused as the API refuses an input it cannot fetch.
    client = await make_client(emu, storage=storage)
    stored = await client.upload(_copy("faststart.mp4", tmp_path))
    gone = stored.url.replace(stored.sha256, "0" * 64)
    with pytest.raises(oe.BadRequestError, match="HTTP 404"):
        await client.submit(gone, "warmer")


async def test_without_storage_a_local_clip_fails_at_once_naming_the_extra(
    emu: Emulator, make_client: ClientFactory, tmp_path: Path
) -> None:
    client = await make_client(emu)
    with pytest.raises(oe.ValidationError, match=r"omni-edit\[s3\]") as caught:
        await client.submit(_copy("clip_9_9s.mp4", tmp_path), "warmer")
    assert caught.value.field == "storage"
    assert "\n" not in str(caught.value)
    assert client.requests_sent == 0


async def test_the_storage_may_come_from_the_environment(
    emu: Emulator,
    make_client: ClientFactory,
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMNI_EDIT_STORAGE", f"s3://{bucket}/from-env/")
    monkeypatch.setenv("OMNI_EDIT_STORAGE_ENDPOINT", s3_server.endpoint)
    client = await make_client(emu)
    stored = await client.upload(_copy("clip_9_9s.mp4", tmp_path))
    assert stored.uploaded
    assert s3_server.object_names(bucket) == [f"from-env/{stored.sha256}.mp4"]


async def test_wrong_credentials_are_one_clear_line_without_the_secret(
    emu: Emulator,
    make_client: ClientFactory,
    storage: oe.S3Storage,
    s3_server: S3Server,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await make_client(emu, storage=storage)
    clip = _copy("clip_9_9s.mp4", tmp_path)
    with s3_server.enforcing_auth(), pytest.raises(oe.StorageError) as caught:
        await client.submit(clip, "warmer")
    message = str(caught.value)
    assert "refused the credentials" in message
    assert "AWS_SECRET_ACCESS_KEY" in message
    assert "\n" not in message
    assert SECRET not in message + repr(caught.value) + repr(storage) + caplog.text
    assert client.requests_sent == 0
    assert len(emu.tasks) == 0


async def test_a_missing_bucket_is_one_clear_line(
    emu: Emulator, make_client: ClientFactory, s3_server: S3Server, tmp_path: Path
) -> None:
    storage = oe.S3Storage("no-such-bucket", endpoint_url=s3_server.endpoint)
    client = await make_client(emu, storage=storage)
    with pytest.raises(oe.StorageError, match="bucket 'no-such-bucket' does not exist") as caught:
        await client.submit(_copy("clip_9_9s.mp4", tmp_path), "warmer")
    assert "\n" not in str(caught.value)
    assert len(emu.tasks) == 0


async def test_a_clip_that_changes_or_vanishes_while_uploaded_stores_and_bills_nothing(
    emu: Emulator,
    make_client: ClientFactory,
    storage: oe.S3Storage,
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
) -> None:
    # Bigger than a part (5 MiB), so the upload is multipart: it must not complete.
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(7 * 1024 * 1024))
    digest, size = _sha(big), big.stat().st_size
    with big.open("r+b") as file:
        file.truncate(6 * 1024 * 1024)  # shrank after it was hashed
    with pytest.raises(oe.ValidationError, match="changed while it was uploaded"):
        await storage.upload(big, f"{digest}.mp4", sha256=digest, size=size)
    assert s3_server.object_names(bucket) == []

    class Vanishing:
        """The file is removed after it was checked and hashed, before it is read."""

        location = storage.location

        async def exists(self, name: str, size: int) -> bool:
            clip.unlink()
            return await storage.exists(name, size)

        async def upload(self, path: Path, name: str, *, sha256: str, size: int) -> None:
            await storage.upload(path, name, sha256=sha256, size=size)

        async def url(self, name: str, *, expires_in: float) -> str:
            return await storage.url(name, expires_in=expires_in)

    assert isinstance(Vanishing(), oe.Storage)
    clip = _copy("clip_9_9s.mp4", tmp_path)
    client = await make_client(emu, storage=Vanishing())
    with pytest.raises(oe.ValidationError, match="could not be read while it was uploaded"):
        await client.submit(clip, "warmer")
    assert s3_server.object_names(bucket) == []
    assert len(emu.tasks) == 0


async def test_storage_settings_are_checked(s3_server: S3Server) -> None:
    with pytest.raises(oe.ValidationError, match="not an s3://bucket/prefix"):
        oe.S3Storage.from_url("https://bucket/x")
    with pytest.raises(oe.ValidationError, match="not an S3 bucket name"):
        oe.S3Storage("Bad_Bucket")
    with pytest.raises(oe.ValidationError, match="plain http"):
        oe.S3Storage("bucket", endpoint_url="http://storage.example.com")
    with pytest.raises(oe.ValidationError, match="storage_url_seconds"):
        oe.Client("sk-test", storage_url_seconds=8 * 24 * 3600)
    storage = oe.S3Storage.from_url("s3://bucket/a/b/", endpoint_url=s3_server.endpoint)
    assert storage.location == "s3://bucket/a/b"
    assert SECRET not in repr(storage)


# --- In a batch --------------------------------------------------------------------------


async def test_a_batch_of_local_clips_reruns_from_its_journal_wherever_the_folder_moved(
    emu: Emulator,
    make_client: ClientFactory,
    storage: oe.S3Storage,
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
) -> None:
    first = tmp_path / "first"
    first.mkdir()
    names = ["clip_9_9s.mp4", "faststart.mp4", "moov_at_end.mp4"]
    clips = [_copy(name, first) for name in names]
    journal = tmp_path / "run.sqlite"
    client = await make_client(emu, storage=storage)
    seen: list[oe.BatchProgress] = []

    async def run(paths: list[Path]) -> list[oe.EditOutcome]:
        return [
            outcome
            async for outcome in client.edit_many(
                [(path, "warmer") for path in paths],
                journal=journal,
                download_dir=tmp_path / "out",
                on_progress=seen.append,
            )
        ]

    outcomes = await run(clips)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert len(emu.tasks) == 3
    assert sorted(s3_server.object_names(bucket)) == sorted(f"in/{_sha(c)}.mp4" for c in clips)
    assert seen[-1].uploaded == 3
    assert max(p.uploading for p in seen) >= 1
    # Results are named after the clip.
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "out").iterdir()) == [
        "clip_9_9s",
        "faststart",
        "moov_at_end",
    ]

    # The folder moved: the clips are known by their content, so nothing is sent again.
    moved = first.rename(tmp_path / "moved")
    seen.clear()
    outcomes = await run([moved / name for name in names])
    assert all(o.ok and o.resumed for o in outcomes)
    assert len(emu.tasks) == 3
    assert all(p.uploaded == 0 and p.submitted == 0 for p in seen)


async def test_a_lost_create_is_replayed_with_the_url_it_carried(
    emu: Emulator,
    make_client: ClientFactory,
    storage: oe.S3Storage,
    tmp_path: Path,
) -> None:
    from omni_edit._batch.journal import Identity, fingerprint
    from omni_edit._batch.sqlite_journal import SqliteJournal

    client = await make_client(emu, storage=storage)
    clip = _copy("clip_9_9s.mp4", tmp_path)
    # Signed for another lifetime: a URL signed now would differ from it.
    earlier = await make_client(emu, storage=storage, storage_url_seconds=3600)
    stored = await earlier.upload(clip)
    # An earlier run recorded "submitting" with its key and URL, and its create reached
    # the gateway (which made the task) but its answer was lost.
    key = "oe-replayed-key-0123456789abcdef"
    identity = Identity(fingerprint(f"sha256:{stored.sha256}", "warmer", None), 0)
    journal_path = tmp_path / "run.sqlite"
    journal = await SqliteJournal.open(str(journal_path))
    await journal.claim(identity, (str(clip), "warmer", None), submit=False)
    await journal.submitting(identity, 1, key, video_url=stored.url)
    await journal.close()
    made = await client.submit(stored.url, "warmer", idempotency_key=key)

    # The rerun sends the same request again (a fresh URL would be another request, a
    # 409 idempotency_conflict), and the gateway answers with the task it made.
    outcomes = [o async for o in client.edit_many([(clip, "warmer")], journal=journal_path)]
    assert outcomes[0].ok, outcomes[0].error
    assert outcomes[0].task is not None
    assert outcomes[0].task.id == made.id
    assert emu.stats.replays == 1
    assert len(emu.tasks) == 1
