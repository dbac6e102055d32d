"""A campaign running in the background, watched as an async iterator of progress events.

`BulkSender.start_campaign(...)` runs `send_campaign(...)` in a task of its own and hands back
a `CampaignRun`: `async for event in run:` yields `Progress` events as the run goes (the
latest one each time the consumer asks, so a slow consumer skips events and never slows the
sends down), and the loop ends after the final event. Leaving the `async with` block waits
for the campaign; leaving it early by an exception cancels the run, which settles its in-flight
sends by the campaign's policy, as any interrupted run does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Self

import anyio
import anyio.abc

from xcomm._errors import LifecycleError
from xcomm.bulk._result import CampaignResult, Progress

__all__ = ["CampaignRun"]


class CampaignRun:
    """A campaign started with `bulk.start_campaign(...)`; use it with `async with`.

    Example:
        ```python
        async with bulk.start_campaign(template=template, recipients="people.csv") as run:
            async for event in run:
                print(f"{event.done} done, {event.rate:.0f}/s")
        print(run.result.sent, "sent")
        ```

    Attributes:
        campaign_id: the campaign's id (given, or generated when the run starts).
    """

    def __init__(
        self,
        campaign_id: str,
        start: Callable[[Callable[[Progress], None]], Awaitable[CampaignResult]],
    ) -> None:
        self.campaign_id = campaign_id
        self._start = start
        self._latest: Progress | None = None
        self._changed = anyio.Event()
        self._finished = False
        self._result: CampaignResult | None = None
        self._group: anyio.abc.TaskGroup | None = None

    @property
    def result(self) -> CampaignResult:
        """The campaign's result, once the `async with` block has ended."""
        if self._result is None:
            raise LifecycleError(
                "the campaign has not finished: read run.result after the `async with` block"
            )
        return self._result

    @property
    def latest(self) -> Progress | None:
        """The most recent progress event (None before the first)."""
        return self._latest

    def _push(self, event: Progress) -> None:
        self._latest = event
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _main(self) -> None:
        try:
            self._result = await self._start(self._push)
        finally:
            self._finished = True
            self._changed.set()

    async def __aiter__(self) -> AsyncIterator[Progress]:
        if self._group is None:
            raise LifecycleError("iterate a CampaignRun inside its `async with` block")
        shown: Progress | None = None
        while True:
            changed = self._changed
            latest = self._latest
            if latest is not None and latest is not shown:
                shown = latest
                yield latest
                continue
            if self._finished:
                return
            await changed.wait()

    async def __aenter__(self) -> Self:
        if self._group is not None:
            raise LifecycleError("a CampaignRun can be entered once")
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._main)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        assert self._group is not None
        if exc is not None:
            self._group.cancel_scope.cancel()
        try:
            return await self._group.__aexit__(exc_type, exc, traceback)
        except BaseExceptionGroup as group:
            # The campaign's own error, not a group: as `send_campaign` would raise it.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
