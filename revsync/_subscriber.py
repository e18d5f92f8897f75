"""The node's background sync: three supervised tasks around one queue.

- reader: holds the bus subscription, validates each message as it arrives
  (size first, then format and signature) and moves valid events into the queue,
  which is bounded in bytes as well as in items.  A valid revoke message's jti is
  refused at once (``RevocationSet.refuse_now``), before the event waits for the
  applier: propagation does not wait for a catch-up or a doorbell's store read in
  progress, nor for another turn of an event loop busy with requests
  (docs/design.md, "Refused on arrival").  It recognises the node's own
  heartbeats itself, so a slow catch-up cannot delay them.  It treats every
  subscribe confirmation as a (re)connect, since redis-py may re-subscribe
  silently, and reconnects itself on an error or when the node's own heartbeat
  stops coming back (a hung connection): after a backoff with jitter, which the bus
  cuts short when it sees its primary move (a Sentinel or Cluster failover).  A
  subscribe confirmation is never taken for a heartbeat: only a ping this node
  sent, coming back over the bus, proves that the bus carries its messages.  Pings
  travel on a channel of the node's own (``ping_channel``), subscribed on the same
  connection as the shared channel, so no node receives another's.
- applier: the only consumer of the queue.  It applies events, and catches up
  from the store after a (re)connect, a sequence gap, a queue overflow, a
  suspicious event, on request and on the resync timer.  The first catch-up is the
  start-up snapshot: the subscription is confirmed before it starts and events
  arriving meanwhile wait in the queue (list-then-watch), then the node is ready.
- ticker: publishes the heartbeat, schedules resyncs and prunes expired entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from revsync._backoff import backoff
from revsync._bus import SINGLE_PROCESS_HINT, Bus, BusError, Subscription, ping_channel
from revsync._logging import get_logger
from revsync._replica import DOORBELLS, Replica, Verdict
from revsync._stats import SyncStats
from revsync.config import Settings
from revsync.events import InvalidEvent, Op, RevocationEvent, decode_event, encode_event

logger = get_logger()

QUEUE_LIMIT: Final = 100_000
QUEUE_BYTES: Final = 8 * 1024 * 1024
"""Bytes of messages the queue may hold; beyond it (or QUEUE_LIMIT items) messages
are dropped and the applier catches up from the store instead."""
DOORBELL_BACKLOG: Final = 64
"""Queued items beyond which doorbells are answered by one catch-up, not a read each."""
SUSPECT_CATCH_UP_INTERVAL: Final = 1.0
"""Least seconds between catch-ups asked for by suspicious events, so a flood of
forged messages cannot turn into a flood of store reads."""
TICK: Final = 0.1
SWEEP_INTERVAL: Final = 10.0
CHECKPOINT_INTERVAL: Final = 300.0
"""Seconds between two checkpoints (REVSYNC_CHECKPOINT_PATH); one more at shutdown."""
FILE_SLICE: Final = 20_000
"""Keys of a start-up snapshot filed in expiry buckets per tick (about 10 ms of work),
so that filing a million keys neither delays readiness nor blocks the loop for long."""


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


SUBSCRIBED: Final = _Signal("subscribed")
RESYNC: Final = _Signal("resync")
QueueItem = _Signal | tuple[RevocationEvent, float, int, bool]
"""A marker, or (event, unix time received, size in bytes of its message, whether the
reader refused its jti on arrival)."""


class Subscriber:
    """Runs reader, applier and ticker for one node and reports their state."""

    def __init__(self, settings: Settings, bus: Bus, replica: Replica, stats: SyncStats) -> None:
        self.settings = settings
        self.bus = bus
        self.replica = replica
        self.stats = stats
        self.ready = asyncio.Event()
        self.synced = asyncio.Event()
        """Set once the node has both its snapshot and its first heartbeat back."""
        self.bus_state = "starting"
        self.last_error: str | None = None
        self.last_heartbeat: float | None = None
        self.stale = False
        self._queue: asyncio.Queue[QueueItem] = asyncio.Queue()
        self._queued_bytes = 0
        self._resync_queued = False
        self._pings: dict[str, float] = {}
        """Nonces of heartbeats sent and not yet back -> monotonic time sent."""
        self._last_suspect = -SUSPECT_CATCH_UP_INTERVAL
        self._next_ping = 0.0
        self._overflowed = False
        self._need_catch_up = False
        self._connected_at = time.monotonic()
        self._ever_subscribed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._on_confirmed: Callable[[], None] = lambda: None
        self._heartbeat: asyncio.Task[None] | None = None
        self._store_prune: asyncio.Task[None] | None = None
        self._checkpoint: asyncio.Task[None] | None = None
        # Without a heartbeat for this long the connection is presumed hung.
        self.heartbeat_timeout = max(3 * settings.heartbeat_interval, 1.0)
        self.ping_channel = ping_channel(settings.channel, settings.node_id)
        """Where this node's heartbeats go; only this node subscribes to it."""
        self._pubsub: Subscription | None = None
        """The reader's current subscription (for tests that break it)."""

    # -- lifecycle ---------------------------------------------------------------

    def start(self, on_confirmed: Callable[[], None]) -> None:
        """Start the three tasks; ``on_confirmed`` runs whenever sync is confirmed."""
        self._on_confirmed = on_confirmed
        for name, body in (
            ("reader", self._read),
            ("applier", self._apply),
            ("ticker", self._tick),
        ):
            task = asyncio.create_task(self._supervise(name, body), name=f"revsync-{name}")
            self._tasks.append(task)

    async def stop(self) -> None:
        """Cancel the tasks, wait for them, and re-raise any real error they died of."""
        for extra in (self._heartbeat, self._store_prune, self._checkpoint):
            if extra is not None:
                self._tasks.append(extra)
        self._heartbeat = self._store_prune = self._checkpoint = None
        # Cancel until every task has ended: on Python 3.11 a cancellation that lands
        # as an ``asyncio.timeout`` expires comes out as TimeoutError, which the reader
        # treats as a dropped connection and retries, so one cancel() can be lost.
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._drop_queued()
        self._forget_sync()
        errors = [r for r in results if isinstance(r, BaseException)]
        errors = [e for e in errors if not isinstance(e, asyncio.CancelledError)]
        if errors:
            raise errors[0]

    def _drop_queued(self) -> None:
        """Empty the queue (started again, the node catches up from the store anyway),
        settling every jti the reader refused on arrival for an event left in it."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, tuple) and item[3]:
                self.replica.revocations.settle(item[0].key)
        self._queued_bytes = 0
        self._resync_queued = False

    def _forget_sync(self) -> None:
        """A stopped node vouches for nothing: started again, it takes a new snapshot
        and waits for a new heartbeat before it answers a token (what it missed while
        stopped is in the store, not on the bus)."""
        self.ready.clear()
        self.synced.clear()
        self.last_heartbeat = None
        self.replica.last_store_sync = None
        self._pings.clear()
        self.bus_state = "stopped"

    async def _supervise(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Keep a task alive: an unexpected error is logged and the task restarted."""
        attempt = 0
        while True:
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{name}: {type(exc).__name__}: {exc}"
                logger.exception("revsync.task_crashed", task=name, attempt=attempt)
                await asyncio.sleep(backoff(attempt))
                attempt += 1
            else:
                return

    # -- reader ------------------------------------------------------------------

    async def _read(self) -> None:
        attempt = 0
        while True:
            pubsub = self._pubsub = self.bus.subscription()
            channel = self.settings.channel
            try:
                async with asyncio.timeout(self.bus.timeout):
                    await pubsub.subscribe(channel, self.ping_channel)
                self._connected_at = time.monotonic()
                while True:
                    message = await pubsub.get_message(timeout=0.25)
                    # Checked on every message too: a flood must not hide a silent link.
                    self._check_heartbeat()
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind == "message":
                        if _name(message["channel"]) == channel:
                            self._receive(message["data"])
                        else:
                            self._receive_ping(message["data"])
                    elif kind == "subscribe" and _name(message["channel"]) == channel:
                        # One confirmation per (re)connect: the ping channel's comes
                        # with it, on the same connection.
                        attempt = 0
                        self._on_subscribed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.bus_state = "disconnected"
                self.last_error = f"bus: {type(exc).__name__}: {exc}"
                logger.warning(
                    "revsync.subscriber_disconnected",
                    error=f"{type(exc).__name__}: {exc}",
                    attempt=attempt,
                )
                if not self._ever_subscribed and attempt == 0:
                    # Once, at start-up: a first-time user without Redis learns the way out.
                    logger.error("revsync.bus_unreachable", hint=SINGLE_PROCESS_HINT)
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await pubsub.aclose()
            # A failover seen by the bus ends the wait: the new primary is there now.
            attempt = 0 if await self.bus.pause(attempt) else attempt + 1

    def _on_subscribed(self) -> None:
        if self._ever_subscribed:
            self.stats.reconnects += 1
            logger.info("revsync.subscriber_reconnected", channel=self.settings.channel)
        self._ever_subscribed = True
        self.bus_state = "connected"
        # Restarts the watchdog's clock, not the staleness clock: a subscribe
        # confirmation does not prove that this node's publishes reach the bus.  A
        # ping goes out at the next tick to prove it (one sent before the
        # subscription was confirmed could not come back).
        self._connected_at = time.monotonic()
        self._next_ping = 0.0
        self._queue.put_nowait(SUBSCRIBED)

    def _decode(self, data: Any) -> tuple[RevocationEvent | None, bytes]:
        """A message's event, or None (counted and logged) if it is not a valid one."""
        if not isinstance(data, bytes):
            data = str(data).encode("utf-8", "surrogatepass")
        try:
            return decode_event(data, self.settings.event_key), data
        except InvalidEvent as exc:
            self.stats.rejected[exc.reason] += 1
            logger.warning(
                "revsync.event_rejected", reason=exc.reason, detail=exc.detail, size=len(data)
            )
            return None, data

    def _receive(self, data: Any) -> None:
        """Validate one message of the shared channel and queue its event; drop and
        count anything else."""
        event, data = self._decode(data)
        if event is None:
            return
        if event.op is Op.PING:
            # A node of an older version pings here; never one of ours.
            self.stats.foreign_pings += 1
            return
        size = len(data)
        if self._queue.qsize() >= QUEUE_LIMIT or self._queued_bytes + size > QUEUE_BYTES:
            # Dropping is safe: the overflow flag makes the applier catch up.
            self._overflowed = True
            self.stats.queue_overflows += 1
            return
        received_at = time.time()
        refused = event.op is Op.REVOKE and self._refuse_on_arrival(event, received_at)
        self._queued_bytes += size
        self._queue.put_nowait((event, received_at, size, refused))

    def _refuse_on_arrival(self, event: RevocationEvent, now: float) -> bool:
        """Refuse a revoke message's jti at once; the applier settles it when the
        event's turn comes (every queued item reaches the applier, which is why an
        overflowing message is never refused here)."""
        revocations = self.replica.revocations
        if not self.ready.is_set() or event.expires_at + revocations.leeway < now:
            return False  # before the snapshot every token is refused anyway
        return revocations.refuse_now(event.key)

    def _receive_ping(self, data: Any) -> None:
        """A message on this node's ping channel: only pings belong there."""
        event, _ = self._decode(data)
        if event is None:
            return
        if event.op is not Op.PING:
            self.stats.rejected["not_a_ping"] += 1
            logger.warning("revsync.event_rejected", reason="not_a_ping", op=str(event.op))
            return
        self._on_ping(event)

    def _on_ping(self, event: RevocationEvent) -> None:
        """Count a heartbeat only if it is one this node sent and has not seen back."""
        if self._pings.pop(event.key, None) is None:
            self.stats.foreign_pings += 1
            return  # a replay of an old one of ours, or made up
        self.last_heartbeat = time.monotonic()
        self.stats.heartbeats += 1
        self._confirmed()

    def _confirmed(self) -> None:
        if self.ready.is_set() and self.last_heartbeat is not None:
            self.synced.set()
        self._on_confirmed()

    def request_catch_up(self) -> None:
        """Ask the applier to catch up from the store soon (at most one queued request)."""
        if not self._resync_queued:
            self._resync_queued = True
            self._queue.put_nowait(RESYNC)

    def _check_heartbeat(self) -> None:
        """Raise when our own heartbeat has stopped coming back: the link is hung."""
        if self.bus_state != "connected":
            return
        since = max(self.last_heartbeat or 0.0, self._connected_at)
        if time.monotonic() - since > self.heartbeat_timeout:
            msg = f"no heartbeat for {self.heartbeat_timeout:g}s"
            raise TimeoutError(msg)

    # -- applier -----------------------------------------------------------------

    async def _apply(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._apply_item(item)
            finally:
                # Even when cancelled or failed: a jti refused on arrival stays refused
                # only if the set now holds it.
                if isinstance(item, tuple) and item[3]:
                    self.replica.revocations.settle(item[0].key)

    async def _apply_item(self, item: QueueItem) -> None:
        if isinstance(item, tuple):
            self._queued_bytes -= item[2]
        if self._overflowed:
            self._overflowed = False
            await self._catch_up("overflow")
        if item is SUBSCRIBED:
            await self._catch_up("snapshot" if not self.ready.is_set() else "reconnect")
        elif item is RESYNC:
            self._resync_queued = False
            if not self.ready.is_set():
                await self._catch_up("snapshot")
            else:
                await self._catch_up("retry" if self._need_catch_up else "timer")
        elif isinstance(item, tuple):
            await self._handle(item[0], item[1] if item[3] else None)

    async def _handle(self, event: RevocationEvent, refused_at: float | None) -> None:
        """Apply one event; ``refused_at``: when the reader refused its jti on arrival."""
        if not self.ready.is_set():
            # Still before the snapshot: it will be read from the store anyway.
            return
        if event.op in DOORBELLS and self._queue.qsize() > DOORBELL_BACKLOG:
            # Each doorbell costs a store read: with a backlog (a flood, forged or not),
            # one catch-up reads every change they can announce, and costs nothing for
            # the forged ones, instead of one read each while revocations wait behind.
            self.stats.deferred_doorbells += 1
            self._need_catch_up = True  # the ticker asks within a second, not per message
            return
        try:
            verdict = await self.replica.apply_event(event)
        except Exception as exc:
            # A doorbell whose store read failed: repair by catching up later.
            self.last_error = f"store: {type(exc).__name__}: {exc}"
            self._need_catch_up = True
            return
        if verdict is Verdict.APPLIED or verdict is Verdict.GAP:
            self._observe_lag(event, time.time() if refused_at is None else refused_at)
        elif refused_at is not None and self.replica.revocations.expires_at(event.key) is not None:
            # A catch-up read the change while the event waited: the refusal made on
            # arrival was the change reaching this node.
            self._observe_lag(event, refused_at)
        if verdict is Verdict.GAP:
            await self._catch_up("gap")
        elif verdict is Verdict.SUSPECT:
            now = time.monotonic()
            if now - self._last_suspect >= SUSPECT_CATCH_UP_INTERVAL:
                self._last_suspect = now
                await self._catch_up("suspect")
            else:
                self._need_catch_up = True  # the ticker retries within a second

    def _observe_lag(self, event: RevocationEvent, refused_at: float) -> None:
        """Propagation: from the publisher's send to the moment this node refused."""
        lag = refused_at - event.sent_at
        for observe in self.stats.lag_observers:
            observe(lag)
        logger.debug(
            "revsync.event_applied",
            op=str(event.op),
            seq=event.seq,
            origin=event.origin,
            lag_ms=round(lag * 1000, 3),
        )

    async def _catch_up(self, reason: str) -> None:
        started = time.monotonic()
        try:
            await self.replica.store.connect()
            count = await self.replica.catch_up()
        except Exception as exc:
            self.stats.resync_failures += 1
            self._need_catch_up = True
            self.last_error = f"store: {type(exc).__name__}: {exc}"
            logger.warning("revsync.resync_failed", reason=reason, error=self.last_error)
            return
        self._need_catch_up = False
        self.stats.resyncs += 1
        first = not self.ready.is_set()
        self.ready.set()
        self._confirmed()
        duration_ms = round((time.monotonic() - started) * 1000, 3)
        log = logger.info if (count or reason != "timer") else logger.debug
        log(
            "revsync.resynced",
            reason=reason,
            rows=count,
            seq=self.replica.store_seq,
            entries=len(self.replica.revocations),
            duration_ms=duration_ms,
        )
        if first:
            self.last_error = None
            self.stats.backfill_seconds = time.monotonic() - started
            self.stats.backfill_rows = count
            logger.info(
                "revsync.ready",
                node=self.settings.node_id,
                seq=self.replica.store_seq,
                entries=len(self.replica.revocations),
                duration_ms=duration_ms,
            )

    # -- ticker ------------------------------------------------------------------

    async def _tick(self) -> None:
        now = time.monotonic()
        self._next_ping = now
        next_resync = now + self.settings.resync_interval
        next_retry = now
        next_sweep = now + SWEEP_INTERVAL
        # Jittered, so that nodes started together do not all prune the store at once.
        next_store_prune = now + random.uniform(0.5, 1.0) * self.settings.prune_interval
        next_checkpoint = now + CHECKPOINT_INTERVAL
        while True:
            now = time.monotonic()
            if now >= self._next_ping:
                self._next_ping = now + self.settings.heartbeat_interval
                # In a task of its own: a publish to a hung Redis waits for its
                # timeout, and the resync timer must keep its period meanwhile.
                if self._heartbeat is None or self._heartbeat.done():
                    self._heartbeat = asyncio.create_task(
                        self._publish_heartbeat(), name="revsync-heartbeat"
                    )
            if (self.ready.is_set() and now >= next_resync) or (
                self._need_catch_up and now >= next_retry
            ):
                next_resync = now + self.settings.resync_interval
                next_retry = now + min(1.0, self.settings.resync_interval)
                self.request_catch_up()
            self._watch_staleness()
            if self.replica.wants_catch_up:
                self.replica.wants_catch_up = False
                self.request_catch_up()
            if self.replica.revocations.pending:
                self.replica.revocations.file_pending(FILE_SLICE)
            if now >= next_sweep:
                next_sweep = now + SWEEP_INTERVAL
                async with self.replica.lock:
                    self.stats.swept += self.replica.revocations.sweep()
            if self.ready.is_set() and now >= next_store_prune:
                next_store_prune = now + random.uniform(0.75, 1.25) * self.settings.prune_interval
                if self._store_prune is None or self._store_prune.done():
                    self._store_prune = asyncio.create_task(
                        self._prune_store(), name="revsync-store-prune"
                    )
            if self.ready.is_set() and now >= next_checkpoint:
                next_checkpoint = now + CHECKPOINT_INTERVAL
                if self._checkpoint is None or self._checkpoint.done():
                    self._checkpoint = asyncio.create_task(
                        self.replica.save_checkpoint(), name="revsync-checkpoint"
                    )
            await asyncio.sleep(TICK)

    async def _prune_store(self) -> None:
        """Drop store rows whose tokens expired (plus leeway): guarantee 8 for the store."""
        try:
            removed = await self.replica.store.prune(time.time() - self.settings.leeway)
        except Exception as exc:
            logger.warning("revsync.store_prune_failed", error=f"{type(exc).__name__}: {exc}")
            return
        self.stats.store_pruned += removed
        if removed:
            logger.info("revsync.store_pruned", rows=removed)

    @property
    def queued(self) -> int:
        """Items waiting in the queue (events and markers)."""
        return self._queue.qsize()

    @property
    def queued_bytes(self) -> int:
        """Bytes of the messages whose events wait in the queue (at most QUEUE_BYTES)."""
        return self._queued_bytes

    def seconds_since_sync(self) -> float | None:
        """Seconds since sync was last confirmed both ways: a store catch-up and a
        heartbeat round trip over the bus.  None before the first of either."""
        store = self.replica.last_store_sync
        if store is None or self.last_heartbeat is None:
            return None
        return time.monotonic() - min(store, self.last_heartbeat)

    def _watch_staleness(self) -> None:
        """Log the moment sync goes stale and the moment it is restored."""
        if not self.synced.is_set():
            return  # still starting: the start-up timeout speaks for that
        since = self.seconds_since_sync()
        stale = since is None or since > self.settings.max_staleness
        if stale and not self.stale:
            logger.error(
                "revsync.stale",
                seconds_since_sync=None if since is None else round(since, 3),
                max_staleness=self.settings.max_staleness,
                fail_mode=self.settings.fail_mode,
                action="refusing every token"
                if self.settings.fail_mode == "closed"
                else "accepting tokens unchecked against recent revocations",
                last_error=self.last_error,
            )
        elif self.stale and not stale:
            logger.info("revsync.sync_restored", seconds_since_sync=round(since or 0.0, 3))
        self.stale = stale

    async def _publish_heartbeat(self) -> None:
        # A fresh, unpredictable nonce per ping: a replayed old ping of ours, or one an
        # attacker made up, proves nothing.
        nonce = secrets.token_hex(12)
        now = time.monotonic()
        horizon = now - 2 * self.heartbeat_timeout
        self._pings = {n: sent for n, sent in self._pings.items() if sent > horizon}
        self._pings[nonce] = now
        event = RevocationEvent.ping(self.settings.node_id, nonce, time.time())
        try:
            await self.bus.publish(
                encode_event(event, self.settings.event_key), channel=self.ping_channel
            )
        except BusError as exc:
            logger.debug("revsync.heartbeat_failed", error=str(exc))


def _name(channel: Any) -> str:
    """A message's channel as text (redis-py gives bytes, the in-process bus str)."""
    return channel.decode("utf-8", "surrogateescape") if isinstance(channel, bytes) else channel
