"""Writes that run to completion once started, whatever happens to their caller.

Quart cancels a request handler when its client disconnects.  A revocation cancelled
half-way (committed in the store, not yet applied on this node nor announced) would
leave the node accepting a token the store says is revoked until its next catch-up,
and a store transaction cancelled half-way can leave a connection inside an open
transaction.  So each write runs in a task of its own, shielded from the caller's
cancellation: the caller still gets CancelledError at once, and the write finishes
behind it (its error, if any, is logged since nobody is left to receive it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from revsync._logging import get_logger

logger = get_logger()

T = TypeVar("T")


class ShieldedWork:
    """Runs coroutines shielded from their callers' cancellation; :meth:`drain` waits."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._tasks: set[asyncio.Task[Any]] = set()
        self._abandoned: set[asyncio.Task[Any]] = set()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion and return its result.

        If the caller is cancelled meanwhile, CancelledError reaches the caller at
        once and ``coro`` goes on; its result or error is then only logged.
        """
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                self._report(task)  # finished just as its caller was cancelled
            else:
                self._abandoned.add(task)
            raise

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task in self._abandoned:
            self._abandoned.discard(task)
            self._report(task)

    def _report(self, task: asyncio.Task[Any]) -> None:
        """Log how a write whose caller was cancelled ended: nobody else will know."""
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            logger.info("revsync.write_finished_after_cancel", what=self._what)
        else:
            logger.error(
                "revsync.write_failed_after_cancel",
                what=self._what,
                error=f"{type(error).__name__}: {error}",
            )

    async def drain(self) -> None:
        """Wait for every write still running (bound it with ``asyncio.timeout``)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)
