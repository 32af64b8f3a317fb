"""Where local clips go so the API can fetch them: the user's own object storage.

The API fetches inputs only from http(s) URLs (docs/api.md#create-a-task), so a local clip
is uploaded first and sent as a presigned GET URL (docs/storage.md). ``Storage`` is the
small interface a store implements; ``S3Storage`` (any S3-compatible service, through
the optional ``obstore`` library, ``pip install 'omni-edit[s3]'``) is the one shipped.

An object is named by its file's SHA-256, so a clip already stored (an earlier run, a
second manifest) is never sent again; the upload streams the file in parts (memory stays
bounded whatever its size) and checks the bytes it sent against that digest, so an
object can never hold other bytes than its name says, even if the file changes or
vanishes while it is read.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread

from .._exceptions import StorageError, ValidationError
from .._models import StoredClip
from .._redact import Secret, redact_url
from .._wire.validation import is_loopback_host

if TYPE_CHECKING:
    from obstore.store import S3Store

__all__ = [
    "DEFAULT_URL_SECONDS",
    "MAX_URL_SECONDS",
    "S3Storage",
    "Storage",
    "file_sha256",
    "is_local_clip",
    "local_clip_path",
    "stage_clip",
    "storage_from_url",
]

# A queued task may wait hours before the API fetches its input (docs/storage.md).
DEFAULT_URL_SECONDS = 6 * 3600.0
# SigV4 presigned URLs live at most 7 days.
MAX_URL_SECONDS = 7 * 24 * 3600.0
# A read is a part: the store sends it as it is, without gathering small reads.
_READ_BYTES = 5 * 1024 * 1024
EXTRA_HINT = "pip install 'omni-edit[s3]'"


@runtime_checkable
class Storage(Protocol):
    """Object storage for local clips: what ``Client(storage=...)`` takes.

    Names are ``<sha256 hex>.mp4``; an implementation may put them under a prefix of its
    own. Every call raises ``StorageError`` (one line, no credential in it) when the store
    cannot be used, and must never leave an object whose bytes differ from its name.
    """

    @property
    def location(self) -> str:
        """Where objects go, for messages: ``s3://bucket/prefix``, with no credential."""
        ...

    async def exists(self, name: str, size: int) -> bool:
        """Whether the object ``name`` is stored already, ``size`` bytes long."""
        ...

    async def upload(self, path: Path, name: str, *, sha256: str, size: int) -> None:
        """Store the file at ``path`` as ``name``, streamed with bounded memory.

        Raises ``ValidationError`` (and stores nothing) when the bytes read are not
        ``size`` bytes with digest ``sha256``: the file changed or vanished meanwhile."""
        ...

    async def url(self, name: str, *, expires_in: float) -> str:
        """A GET URL for ``name`` that anyone may fetch for ``expires_in`` seconds."""
        ...


def is_local_clip(video: str | os.PathLike[str]) -> bool:
    """Whether ``video`` names a local file (a path, a ``Path``, a ``file://`` URL)
    rather than a URL the API fetches itself. Other URL schemes are neither: the
    API's URL check refuses them."""
    if not isinstance(video, str):
        return True
    if video.startswith("file:"):
        return True
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", video) is None


def local_clip_path(video: str | os.PathLike[str]) -> Path:
    """The ``Path`` of a local clip. ``ValidationError`` for a ``file://`` URL naming
    another host, or text that cannot be a path."""
    text = os.fspath(video)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if text.startswith("file:"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise ValidationError(
                f"the clip {text[:80]!r} is a file:// URL on another host: name a local file",
                field="video_url",
            )
        text = unquote(parts.path)
    if not text or "\0" in text:
        raise ValidationError(f"{text[:80]!r} is not a file path", field="video_url")
    return Path(text)


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(_READ_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def file_sha256(path: Path) -> tuple[str, int]:
    """The file's SHA-256 (hex) and size, read in a worker thread a part at a time.

    Raises ``ValidationError`` when the file cannot be read."""
    try:
        return await anyio.to_thread.run_sync(_hash_file, path)
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: OSError) -> ValidationError:
    reason = exc.strerror or type(exc).__name__
    return ValidationError(f"could not read the clip {path}: {reason}", field="video_url")


async def stage_clip(
    storage: Storage, path: Path, *, url_seconds: float = DEFAULT_URL_SECONDS
) -> StoredClip:
    """Put the clip at ``path`` in ``storage`` unless it is there already, and return a
    URL for it valid ``url_seconds``. The clip is assumed checked (``preflight``)."""
    sha256, size = await file_sha256(path)
    name = f"{sha256}.mp4"
    uploaded = False
    if not await storage.exists(name, size):
        await storage.upload(path, name, sha256=sha256, size=size)
        uploaded = True
    expires = datetime.now(timezone.utc) + timedelta(seconds=url_seconds)
    url = await storage.url(name, expires_in=url_seconds)
    return StoredClip(
        url=url, sha256=sha256, size=size, uploaded=uploaded, expires=expires, path=str(path)
    )


class _SourceFailed(Exception):
    """The local file could not be read while it was uploaded (not the store's error)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


def _copy_part(file: IO[bytes], digest: Any, writer: Any) -> int:
    """One part: read from the file, hashed, handed to the store's writer (which sends
    it, with a few parts in flight). Runs in a worker thread; 0 at the end of the file."""
    try:
        chunk = file.read(_READ_BYTES)
    except OSError as exc:
        raise _SourceFailed(exc) from None
    if chunk:
        digest.update(chunk)
        writer.write(chunk)
    return len(chunk)


def _vanished(path: Path, exc: OSError) -> ValidationError:
    reason = exc.strerror or type(exc).__name__
    return ValidationError(
        f"the clip {path} could not be read while it was uploaded ({reason}): nothing was"
        " stored or submitted",
        field="video_url",
    )


# --- S3 ------------------------------------------------------------------------------------

_PART_BYTES = _READ_BYTES  # S3's smallest part (but the last)
_PART_CONCURRENCY = 4


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _import_obstore() -> Any:
    try:
        import obstore
        import obstore.store
    except ImportError:
        raise ValidationError(
            f"uploading local clips needs the S3 support, not installed here: {EXTRA_HINT}",
            field="storage",
        ) from None
    return obstore


class S3Storage:
    """S3-compatible object storage (AWS S3, Cloudflare R2, MinIO, Backblaze B2, GCS
    interoperability): objects under ``s3://bucket/prefix``.

    Each setting falls back to the standard environment variable: ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` (or
    ``AWS_DEFAULT_REGION``; else ``us-east-1``), and for ``endpoint_url``
    ``$OMNI_EDIT_STORAGE_ENDPOINT``, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``
    (else AWS). A plain ``http://`` endpoint is allowed only on a loopback host. Big
    files go up in 5 MiB parts, ``part_concurrency`` at once; ``timeout`` bounds each
    request. Needs ``pip install 'omni-edit[s3]'`` (``ValidationError`` otherwise).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        timeout: float = 60.0,
        part_concurrency: int = _PART_CONCURRENCY,
    ) -> None:
        self._obstore = _import_obstore()
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ValidationError(f"{bucket[:80]!r} is not an S3 bucket name", field="storage")
        if timeout <= 0 or part_concurrency < 1:
            raise ValidationError(
                "timeout must be positive and part_concurrency at least 1", field="storage"
            )
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        endpoint = endpoint_url or _env(
            "OMNI_EDIT_STORAGE_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"
        )
        self._endpoint = _check_endpoint(endpoint) if endpoint else None
        self._region = region or _env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
        self._part_concurrency = part_concurrency
        config: dict[str, Any] = {"region": self._region}
        key_id = access_key_id or _env("AWS_ACCESS_KEY_ID")
        secret = secret_access_key or _env("AWS_SECRET_ACCESS_KEY")
        token = session_token or _env("AWS_SESSION_TOKEN")
        # Without a key, obstore looks for a role (instance or container credentials).
        self._has_key = bool(key_id)
        if key_id:
            config["access_key_id"] = key_id
        # Kept only as Secrets: scrubbed from every error and log line (docs/storage.md).
        self._secrets = tuple(Secret(value) for value in (secret, token) if value)
        if secret:
            config["secret_access_key"] = secret
        if token:
            config["session_token"] = token
        if self._endpoint:
            config["endpoint"] = self._endpoint
        client: dict[str, Any] = {
            "timeout": timedelta(seconds=timeout),
            "connect_timeout": timedelta(seconds=min(timeout, 10.0)),
            "allow_http": bool(self._endpoint and self._endpoint.startswith("http://")),
        }
        retry: dict[str, Any] = {"max_retries": 3, "retry_timeout": timedelta(seconds=60)}
        self._store: S3Store = self._obstore.store.S3Store(
            bucket, config=config, client_options=client, retry_config=retry
        )

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> S3Storage:
        """``S3Storage`` for ``s3://bucket/prefix``; ``settings`` as for the constructor."""
        bucket, prefix = _parse_s3_url(url)
        return cls(bucket, prefix, **settings)

    @property
    def location(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}" if self._prefix else f"s3://{self._bucket}"

    @property
    def endpoint_url(self) -> str | None:
        """The S3 endpoint, or ``None`` for AWS."""
        return self._endpoint

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self._endpoint!r}" if self._endpoint else ""
        return f"S3Storage({self.location!r}{endpoint})"

    def _key(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name

    # obstore's synchronous calls, each in a worker thread: with its asyncio calls, work
    # left on its runtime's threads met the exiting interpreter and aborted the process
    # (SIGABRT) after about one upload in five (docs/storage.md#setting-it-up).

    async def exists(self, name: str, size: int) -> bool:
        try:
            meta = await anyio.to_thread.run_sync(self._obstore.head, self._store, self._key(name))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self._failed("check", exc) from None
        return bool(meta["size"] == size)

    async def upload(self, path: Path, name: str, *, sha256: str, size: int) -> None:
        # A part at a time, each in a worker thread: a cancelled upload stops between two
        # parts. The writer is closed (the object completed) only once the bytes read
        # match ``sha256`` and ``size``; a writer dropped unclosed stores nothing.
        try:
            file: IO[bytes] = await anyio.to_thread.run_sync(open, path, "rb")
        except OSError as exc:
            raise _vanished(path, exc) from None
        try:
            writer = self._obstore.open_writer(
                self._store,
                self._key(name),
                buffer_size=_PART_BYTES,
                max_concurrency=self._part_concurrency,
            )
            digest = hashlib.sha256()
            read = 0
            try:
                while n := await anyio.to_thread.run_sync(_copy_part, file, digest, writer):
                    read += n
                if read != size or digest.hexdigest() != sha256:
                    raise ValidationError(
                        f"the clip {path} changed while it was uploaded ({read} bytes read"
                        f" of {size}): nothing was stored or submitted; run again once it is"
                        " complete",
                        field="video_url",
                    )
                await anyio.to_thread.run_sync(writer.close)
            except _SourceFailed as exc:
                raise _vanished(path, exc.error) from None
            except ValidationError:
                raise
            except Exception as exc:
                raise self._failed("upload to", exc) from None
        finally:
            await anyio.to_thread.run_sync(file.close)

    async def url(self, name: str, *, expires_in: float) -> str:
        try:
            url: str = await anyio.to_thread.run_sync(
                self._obstore.sign,
                self._store,
                "GET",
                self._key(name),
                timedelta(seconds=expires_in),
            )
        except Exception as exc:
            raise self._failed("sign a URL for", exc) from None
        return url

    def _failed(self, action: str, exc: BaseException) -> StorageError:
        """A one-line error that names the store and the S3 error code, never the
        service's whole answer (which may quote request details)."""
        text = str(exc)
        code_match = re.search(r"<Code>([A-Za-z]{1,64})</Code>", text)
        status_match = re.search(r"status code: (\d{3})", text)
        code = code_match.group(1) if code_match else None
        status = status_match.group(1) if status_match else None
        where = self.location + (f" at {self._endpoint}" if self._endpoint else "")
        name = type(exc).__name__
        if code == "NoSuchBucket":
            message = f"the bucket {self._bucket!r} does not exist ({where}): create it first"
        elif name in ("PermissionDeniedError", "UnauthenticatedError") or status in (
            "401",
            "403",
        ):
            detail = code or (f"HTTP {status}" if status else "access denied")
            message = (
                f"the storage {where} refused the credentials ({detail}): check"
                " AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and the key's rights"
                if self._has_key
                else f"no credentials for the storage {where} ({detail}): set"
                " AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        elif status is not None:
            message = f"the storage {where} answered HTTP {status}" + (f" ({code})" if code else "")
        elif "connect" in text.lower() or "dns" in text.lower():
            message = f"could not reach the storage {where}"
        else:
            message = f"the storage {where} failed ({name})"
        return StorageError(f"could not {action} {self._bucket!r}: {message}")


def _check_endpoint(endpoint: str) -> str:
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ValidationError(
            f"the storage endpoint {redact_url(endpoint)[:80]!r} is not an http(s) URL",
            field="storage",
        )
    if parts.username or parts.password or parts.query:
        raise ValidationError(
            "the storage endpoint must not carry credentials or a query: use"
            " AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            field="storage",
        )
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ValidationError(
            f"the storage endpoint {endpoint!r} is plain http: use https (http only on a"
            " loopback host)",
            field="storage",
        )
    return endpoint.rstrip("/")


def _parse_s3_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url) if url.startswith("s3://") else None
    if parts is None or not parts.netloc or parts.query or parts.fragment:
        raise ValidationError(
            f"storage {url[:80]!r} is not an s3://bucket/prefix URL", field="storage"
        )
    return parts.netloc, parts.path.strip("/")


def storage_from_url(url: str, **settings: Any) -> Storage:
    """The ``Storage`` a URL names: ``s3://bucket/prefix`` (the one scheme shipped)."""
    return S3Storage.from_url(url, **settings)
