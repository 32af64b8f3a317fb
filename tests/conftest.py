"""Shared pytest configuration, and factories of started emulators and clients.

A test file that needs an emulator or a client asks for ``make_emulator`` and
``make_client``, directly or through thin ``emu``/``client`` fixtures of its own: no two
files run the emulator with the same settings. Everything the factories start is
closed when the test ends, newest first (clients before the emulators they talk to).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import pytest
from aiohttp import web

import omni_edit as oe
from omni_edit.emulator import Emulator

TEST_KEY = "sk-test-SECRET"


class EmulatorFactory(Protocol):
    async def __call__(self, **settings: Any) -> Emulator:
        """A started ``Emulator(**settings)``."""
        ...


class ClientFactory(Protocol):
    async def __call__(self, emu: Emulator, key: str = TEST_KEY, **options: Any) -> oe.Client:
        """An open ``oe.Client(key, base_url=emu.base_url, **options)``."""
        ...


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio only: the SDK and its emulator are built on aiohttp."""
    return "asyncio"


@pytest.fixture
async def _opened() -> AsyncIterator[AsyncExitStack]:
    """What the factories started, closed in reverse order when the test ends."""
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def make_emulator(_opened: AsyncExitStack) -> EmulatorFactory:
    async def make(**settings: Any) -> Emulator:
        return await _opened.enter_async_context(Emulator(**settings))

    return make


@pytest.fixture
def make_client(_opened: AsyncExitStack) -> ClientFactory:
    async def make(emu: Emulator, key: str = TEST_KEY, **options: Any) -> oe.Client:
        return await _opened.enter_async_context(oe.Client(key, base_url=emu.base_url, **options))

    return make


# A PostgreSQL server for the shared journal's tests: named by this variable, or else
# started by the tests themselves where Debian's PostgreSQL is installed and they run
# as root (``postgres_server``).
POSTGRES_ENV_VAR = "OMNI_EDIT_TEST_POSTGRES"


def _psql(sql: str) -> None:
    subprocess.run(
        ["su", "postgres", "-c", "psql -q -v ON_ERROR_STOP=1"],
        input=sql,
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | None]:
    """A server's URL for the session: ``$OMNI_EDIT_TEST_POSTGRES``, or the machine's own
    cluster (started if it is down, stopped again after) with a role and a database made
    for this run and dropped after; ``None`` where neither is possible."""
    named = os.environ.get(POSTGRES_ENV_VAR)
    if named:
        yield named
        return
    if os.geteuid() != 0 or shutil.which("pg_lsclusters") is None:
        yield None
        return
    found = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False)
    fields = found.stdout.split()
    if found.returncode != 0 or len(fields) < 4:
        yield None
        return
    version, cluster, port, state = fields[:4]
    started = state != "online"
    if started:
        subprocess.run(["pg_ctlcluster", version, cluster, "start"], check=True, timeout=60)
    name = "omni_edit_t_" + secrets.token_hex(4)
    password = secrets.token_hex(16)
    try:
        _psql(
            f"CREATE ROLE {name} LOGIN PASSWORD '{password}';\n"
            f"CREATE DATABASE {name} OWNER {name};\n"
        )
        yield f"postgresql://{name}:{password}@127.0.0.1:{port}/{name}"
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);\nDROP ROLE IF EXISTS {name};\n")
        if started:
            subprocess.run(["pg_ctlcluster", version, cluster, "stop"], check=False, timeout=60)


@pytest.fixture
async def postgres_url(postgres_server: str | None) -> AsyncIterator[str]:
    """The URL of a fresh schema of its own on the test server, dropped afterwards.
    Skipped outside CI when there is no server; in CI ($CI set) a missing one fails."""
    base = postgres_server
    if not base:
        message = (
            f"no PostgreSQL server: set {POSTGRES_ENV_VAR}=postgresql://user:pw@host/db, or"
            " run the tests as root where Debian's postgresql is installed (they start it)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        import asyncpg
    except ImportError:
        pytest.fail("the postgres tests need asyncpg: pip install -e '.[dev]'")
    schema = "t_" + secrets.token_hex(6)
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}search_path={quote(schema)}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


class S3Server:
    """A real S3-compatible server (moto's server mode) on loopback, for the whole test
    session: ``endpoint`` to point ``S3Storage`` at, ``bucket(name)`` to make one."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        # Its request log would fill every failing test's output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def bucket(self, name: str) -> str:
        """Create (or keep) the bucket ``name``; returns it."""
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
        return name

    def object_names(self, bucket: str) -> list[str]:
        with urllib.request.urlopen(f"{self.endpoint}/{bucket}?list-type=2", timeout=10) as r:
            body = r.read().decode()
        return re.findall(r"<Key>([^<]+)</Key>", body)

    @contextmanager
    def enforcing_auth(self) -> Iterator[None]:
        """Requests are checked against known credentials (none are known: every signed
        request is refused, as a wrong key is) until the block ends."""
        from moto import settings
        from moto.core.authorization import ActionAuthenticatorMixin

        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        try:
            yield
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One S3 server for the session, started at the first test that asks for it."""
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


# The committed test clips (tests/data/media).
MEDIA = Path(__file__).parent / "data" / "media"


@pytest.fixture
async def media() -> AsyncIterator[str]:
    """The committed test clips served on loopback with Range support (what preflight,
    --dry-run and the balance check read): the base URL, ``…/media``."""
    app = web.Application()
    app.router.add_static("/media", MEDIA)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/media"
    await runner.cleanup()
