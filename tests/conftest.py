"""Shared pytest configuration."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio only: the SDK and its emulator are built on aiohttp."""
    return "asyncio"
