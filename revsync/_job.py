"""The operator's jobs (``revsync check|migrate|prune|status``): their steps, and how
they report them (plain lines, or a rich progress bar on a terminal when rich is
installed).  ``revsync.cli`` turns them into commands; they raise _JobError, whose
``code`` is the exit status."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from revsync._memory_bus import is_memory_url
from revsync._redis_topology import close_data_client, data_client
from revsync._urls import mask_url
from revsync.config import DEFAULTS, Settings, resolve
from revsync.stores import store_from_url
from revsync.stores.base import Store, StoreError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3
PROGRESS_AFTER = 1.0
"""Seconds of work before a progress bar appears on a terminal."""

T = TypeVar("T")


class _JobError(Exception):
    """A step failed; ``code`` is the process exit status.  Never leaves revsync:
    ``revsync.cli`` turns it into one line on stderr and that exit status."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code


@dataclass(slots=True)
class Report:
    """What a job did, for its summary line and the tests."""

    store: str = ""
    redis: str = ""
    store_id: str = ""
    epoch: int = 0
    head: int = 0
    pruned: int = 0
    rows: int = 0


class Reporter:
    """Prints each finished step as a line; on a TTY with rich installed, adds a
    progress bar once work has taken longer than PROGRESS_AFTER seconds."""

    def __init__(self, out: TextIO, steps: int, *, tty: bool | None = None) -> None:
        self.out = out
        self.steps = steps
        self.tty = out.isatty() if tty is None else tty
        self._progress: Any = None
        self._task: Any = None
        self._timer: asyncio.TimerHandle | None = None

    def begin(self) -> None:
        if not self.tty:
            return
        try:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn
        except ImportError:  # an optional nicety: plain lines without it
            return
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            transient=True,
        )
        self._task = self._progress.add_task("revsync", total=self.steps)
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
        raise _JobError(EXIT_CONFIG, str(exc)) from None


def store_for(settings: Settings) -> Store:
    """The store REVSYNC_STORE_URL names (_JobError with exit 2 when it cannot be built)."""
    try:
        return store_from_url(settings.store_url)
    except (ValueError, ImportError) as exc:
        raise _JobError(EXIT_CONFIG, str(exc)) from None


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
                raise _JobError(EXIT_UNREACHABLE, msg) from None
            await asyncio.sleep(0.25)


async def _ping_redis(url: str) -> None:
    # One server, the Sentinel master or a Cluster, by URL scheme.
    client = data_client(
        url, socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        await client.ping()
    finally:
        await close_data_client(client)


async def _create_schema(store: Store) -> None:
    # Store.create_schema() is the DDL entry point; it works before connect(), which a
    # role without DDL rights could not do on a store whose schema is missing.
    await store.create_schema()
    await store.connect()


class _Job:
    """The steps the commands share, over one store, reporting as they go."""

    def __init__(self, settings: Settings, store: Store, wait: float, out: TextIO, steps: int):
        self.settings = settings
        self.store = store
        self.wait = wait
        self.report = Report(store=store.url, redis=mask_url(settings.redis_url))
        self.reporter = Reporter(out, steps)
        self._where = f"the store at {self.report.store}"

    async def redis(self) -> None:
        self.reporter.step("reaching Redis")
        url = self.settings.redis_url
        if is_memory_url(url):
            # An in-process bus lives in each node: this job has nothing to reach.
            self.reporter.done(f"redis      not used ({self.report.redis}: a bus in process)")
            return
        await _retry(f"Redis at {self.report.redis}", self.wait, lambda: _ping_redis(url))
        self.reporter.done(f"redis      reachable at {self.report.redis}")

    async def connect(self, *, schema: bool, ddl: bool = False) -> None:
        """Connect; ``schema``: say the schema is in place (connect() checks it, and
        creates a missing one where the role may); ``ddl``: create_schema() first."""
        self.reporter.step("connecting to the store")
        if schema:
            work = (lambda: _create_schema(self.store)) if ddl else self.store.connect
            await _retry(self._where, self.wait, work)
            self.reporter.done(f"store      reachable at {self.report.store}; schema in place")
        else:
            await _retry(self._where, self.wait, self.store.connect)
            self.reporter.done(f"store      reachable at {self.report.store}")

    async def position(self, *, new_epoch: bool = False) -> None:
        self.reporter.step("reading the store head")
        position = await _retry(self._where, 0, self.store.position)
        if new_epoch:
            position = await _retry(self._where, 0, self.store.new_epoch)
        report = self.report
        report.store_id, report.epoch, report.head = (
            position.store_id,
            position.epoch,
            position.head,
        )
        self.reporter.done(
            f"sequence   head is {report.head}; store {report.store_id}, epoch {report.epoch}"
            + (" (new: every node re-reads the store)" if new_epoch else "")
        )

    async def prune(self) -> None:
        self.reporter.step("pruning expired entries")
        before = time.time() - self.settings.leeway
        self.report.pruned = await _retry(self._where, 0, lambda: self.store.prune(before))
        self.reporter.done(f"prune      removed {self.report.pruned} expired entries")

    async def check(self) -> None:
        self.reporter.step("verifying the sequence")
        try:
            figures = await self.store.check()
        except StoreError as exc:
            raise _JobError(EXIT_CHECK_FAILED, f"store check failed: {exc}") from None
        self.report.rows, self.report.head = figures["rows"], figures["head"]
        self.reporter.done(
            f"check      ok: {figures['rows']} live rows, head {figures['head']}, "
            f"highest row seq {figures['max_row_seq']}"
        )


async def _run(
    settings: Settings,
    store: Store | None,
    wait: float,
    out: TextIO | None,
    steps: int,
    work: Callable[[_Job], Awaitable[None]],
) -> Report:
    job = _Job(settings, store or store_for(settings), wait, out or sys.stdout, steps)
    job.reporter.begin()
    try:
        await work(job)
    finally:
        job.reporter.end()
        await job.store.close()
    return job.report


async def check(
    settings: Settings,
    store: Store | None = None,
    *,
    wait: float = 10.0,
    out: TextIO | None = None,
    new_epoch: bool = False,
) -> Report:
    """The start-up job: Redis and the store reachable, the schema created, expired
    entries pruned, the sequence verified.

    ``new_epoch``: start a new generation of the store's history (after restoring a
    backup, or failing over to a copy that may have lost writes), so that every node
    re-reads the whole store at its next catch-up.
    """

    async def work(job: _Job) -> None:
        await job.redis()
        await job.connect(schema=True)
        await job.position(new_epoch=new_epoch)
        await job.prune()
        await job.check()

    return await _run(settings, store, wait, out, 5, work)


async def migrate(
    settings: Settings, store: Store | None = None, *, wait: float = 10.0, out: TextIO | None = None
) -> Report:
    """Create the store's schema (the one step that needs DDL rights)."""

    async def work(job: _Job) -> None:
        await job.connect(schema=True, ddl=True)
        await job.position()

    return await _run(settings, store, wait, out, 2, work)


async def prune(
    settings: Settings, store: Store | None = None, *, wait: float = 10.0, out: TextIO | None = None
) -> Report:
    """Drop the store's rows whose tokens expired (plus REVSYNC_LEEWAY)."""

    async def work(job: _Job) -> None:
        await job.connect(schema=False)
        await job.prune()

    return await _run(settings, store, wait, out, 2, work)


async def status(
    settings: Settings, store: Store | None = None, *, wait: float = 10.0, out: TextIO | None = None
) -> Report:
    """Read-only: Redis reachable, the store's position and live rows, its sequence verified."""

    async def work(job: _Job) -> None:
        await job.redis()
        await job.connect(schema=False)
        await job.position()
        await job.check()

    return await _run(settings, store, wait, out, 4, work)


JOBS: dict[str, Callable[..., Awaitable[Report]]] = {
    "check": check,
    "migrate": migrate,
    "prune": prune,
    "status": status,
}
