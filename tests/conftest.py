"""Fixtures shared by every test: a respx router behind the manager's transport seam."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from hypothesis import settings

from xcomm import CommManager, RetryPolicy

# CI runs the same generated examples every time (a red CI run must be reproducible, not a
# new example found by chance); locally, hypothesis explores and remembers what failed.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

FAST_RETRY = RetryPolicy(max_attempts=3, backoff=0.001, max_backoff=0.01, jitter=False)


@pytest.fixture
def router() -> respx.MockRouter:
    """A respx router; requests that match no route fail the test."""
    return respx.MockRouter(assert_all_called=False, assert_all_mocked=True)


@pytest.fixture
async def comm(router: respx.MockRouter) -> AsyncIterator[CommManager]:
    """An open manager whose shared HTTP client talks to `router` instead of the network."""
    async with CommManager(
        transport=httpx.MockTransport(router.async_handler), retry=FAST_RETRY
    ) as manager:
        yield manager


@pytest.fixture(autouse=True)
def _outbox_in_tmp(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test may write to the user's data directory: the default outbox lives in a tmp dir."""
    path = tmp_path_factory.mktemp("outbox") / "outbox.sqlite3"
    monkeypatch.setenv("XCOMM_OUTBOX", str(path))


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Every test must leave no task behind (background tasks never outlive their owner)."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and t is not current]
    assert not leaked, f"tasks leaked: {leaked}"
