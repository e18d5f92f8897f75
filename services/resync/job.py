"""The steps of the resync job, and how it reports them (plain lines, or rich on a TTY)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from revsync._redis_topology import data_client
from revsync._urls import mask_url
from revsync.config import DEFAULTS, Settings, resolve
from revsync.stores import store_from_url
from revsync.stores.base import Store, StoreError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3
PROGRESS_AFTER = 1.0
"""Seconds of work before a progress bar appears on a terminal."""
STEPS = 5

T = TypeVar("T")


class JobError(Exception):
    """A step failed; ``code`` is the process exit status."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code


@dataclass(slots=True)
class Report:
    """What the job did, for its summary line and the tests."""

    store: str = ""
    redis: str = ""
    store_id: str = ""
    epoch: int = 0
    head: int = 0
    pruned: int = 0
    rows: int = 0


class Reporter:
    """Prints each finished step as a line; on a TTY, adds a progress bar once work
    has taken longer than PROGRESS_AFTER seconds."""

    def __init__(self, out: TextIO, *, tty: bool | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self._progress: Any = None
        self._task: Any = None
        self._timer: asyncio.TimerHandle | None = None

    def begin(self) -> None:
        if not self.tty:
            return
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            transient=True,
        )
        self._task = self._progress.add_task("resync", total=STEPS)
        self._timer = asyncio.get_running_loop().call_later(PROGRESS_AFTER, self._progress.start)

    def step(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=description)

    def done(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line, highlight=False)
            self._progress.advance(self._task)
        else:
            print(line, file=self.out, flush=True)

    def end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._progress is not None:
            self._progress.stop()


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    """The REVSYNC_* settings from the environment, validated as the nodes validate them."""
    config = {key: environ[key] for key in DEFAULTS if key in environ}
    try:
        return resolve(config, {})
    except ValueError as exc:
        raise JobError(EXIT_CONFIG, str(exc)) from None


async def _retry(what: str, wait: float, attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()`` until it succeeds or ``wait`` seconds pass (services still starting)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return await attempt()
        except (StoreError, RedisError, OSError, TimeoutError) as exc:
            if time.monotonic() >= deadline:
                reason = (
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                )
                msg = f"cannot reach {what}: {reason}"
                raise JobError(EXIT_UNREACHABLE, msg) from None
            await asyncio.sleep(0.25)


async def _ping_redis(url: str) -> None:
    # One server, the Sentinel master or a Cluster, by URL scheme.
    client = data_client(
        url, socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        await client.ping()
    finally:
        await client.aclose()


async def run(
    environ: Mapping[str, str] | None = None,
    *,
    wait: float = 10.0,
    out: TextIO | None = None,
    new_epoch: bool = False,
) -> Report:
    """Do the job; raise JobError on failure.  Prints one line per finished step.

    ``new_epoch``: start a new generation of the store's history (after restoring a
    backup, or failing over to a copy that may have lost writes), so that every node
    re-reads the whole store at its next catch-up.
    """
    env = os.environ if environ is None else environ
    settings = settings_from_env(env)
    try:
        store: Store = store_from_url(settings.store_url)
    except (ValueError, ImportError) as exc:
        raise JobError(EXIT_CONFIG, str(exc)) from None
    report = Report(store=store.url, redis=mask_url(settings.redis_url))
    reporter = Reporter(out or sys.stdout)
    reporter.begin()
    try:
        reporter.step("reaching Redis")
        await _retry(f"Redis at {report.redis}", wait, lambda: _ping_redis(settings.redis_url))
        reporter.done(f"redis      reachable at {report.redis}")

        reporter.step("connecting to the store")
        await _retry(f"the store at {report.store}", wait, store.connect)
        reporter.done(f"store      reachable at {report.store}; schema in place")

        reporter.step("reading the store head")
        position = await _retry(f"the store at {report.store}", 0, store.position)
        if new_epoch:
            position = await _retry(f"the store at {report.store}", 0, store.new_epoch)
        report.store_id, report.epoch, report.head = (
            position.store_id,
            position.epoch,
            position.head,
        )
        reporter.done(
            f"sequence   head is {report.head}; store {report.store_id}, epoch {report.epoch}"
            + (" (new: every node re-reads the store)" if new_epoch else "")
        )

        reporter.step("pruning expired entries")
        before = time.time() - settings.leeway
        report.pruned = await _retry(f"the store at {report.store}", 0, lambda: store.prune(before))
        reporter.done(f"prune      removed {report.pruned} expired entries")

        reporter.step("verifying the sequence")
        try:
            figures = await store.check()
        except StoreError as exc:
            raise JobError(EXIT_CHECK_FAILED, f"store check failed: {exc}") from None
        report.rows, report.head = figures["rows"], figures["head"]
        reporter.done(
            f"check      ok: {figures['rows']} live rows, head {figures['head']}, "
            f"highest row seq {figures['max_row_seq']}"
        )
    finally:
        reporter.end()
        await store.close()
    return report
