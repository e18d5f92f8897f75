"""The in-process bus, ``memory://``: Redis pub/sub's contract inside one process.

For one process (a single-node app, the seed program, an app's own tests) no Redis
is needed: the nodes of this process exchange events through a hub in memory.
``memory://`` is a hub of the bus's own; ``memory://name`` is shared by every bus
of this process with that name (two RevSync instances in one test).  Nothing
outside this process hears of it: another process, even on the same store, learns
of this one's changes only at its next catch-up.

It keeps what the subscriber relies on from Redis: a publish reaches every
subscription of the channel at that moment (and reports how many), a new
subscription first answers with a ``subscribe`` confirmation, nothing published
before it is seen, and delivery is bounded: a subscription that leaves more than
``limit`` bytes unread is cut off, as Redis disconnects a pub/sub client past its
output-buffer limit, and its next read raises ConnectionError, so the reader
reconnects and catches up from the store.  Subscriptions on other event loops (other
threads) are woken thread-safely.
"""

from __future__ import annotations

import asyncio
import collections
import re
import threading
import weakref
from typing import Any, Final

from revsync._backoff import backoff

__all__ = ["MEMORY_FORM", "SUBSCRIPTION_LIMIT", "MemoryBus", "is_memory_url", "memory_bus_name"]

MEMORY_FORM: Final = "memory:// (this process only) or memory://name (shared by name)"
SUBSCRIPTION_LIMIT: Final = 32 * 1024 * 1024
"""Unread bytes past which a subscription is cut off (Redis's default pub/sub
client-output-buffer hard limit)."""
_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,200}")


def is_memory_url(url: object) -> bool:
    """Whether ``url`` names the in-process bus."""
    return isinstance(url, str) and url.partition("://")[0].lower() == "memory"


def memory_bus_name(url: str, key: str = "REVSYNC_REDIS_URL") -> str | None:
    """The shared hub's name in ``memory://name``; None for ``memory://``.

    ValueError naming ``key`` for anything else (a path, a query, odd characters)."""
    scheme, sep, name = url.partition("://")
    if sep and scheme.lower() == "memory":
        if not name:
            return None
        if _NAME.fullmatch(name):
            return name
    msg = (
        f"{key}={url!r} is not an in-process bus URL; expected {MEMORY_FORM}, "
        "the name made of letters, digits, '.', '_' and '-'"
    )
    raise ValueError(msg)


class _Subscription:
    """One subscriber's connection to a hub: a bounded buffer read by one reader."""

    def __init__(self, hub: _Hub, limit: int) -> None:
        self._hub = hub
        self._limit = limit
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        self._bytes = 0
        self._cut = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()

    async def subscribe(self, *channels: str) -> None:
        """Join every channel; their confirmations are the first messages read."""
        if self._closed:
            msg = "subscription already closed"
            raise ConnectionError(msg)
        self._loop = asyncio.get_running_loop()
        for count, channel in enumerate(channels, 1):
            self._push({"type": "subscribe", "channel": channel, "data": count}, 0)
            self._hub.join(channel, self)

    async def get_message(
        self,
        *,
        timeout: float | None = 0.0,  # noqa: ASYNC109 - PubSub's signature
    ) -> dict[str, Any] | None:
        """The next message, waiting up to ``timeout`` seconds (None: for ever); None
        if none came.

        ConnectionError once the subscription was cut off for unread bytes."""
        if not self._buffer and not self._cut and timeout != 0:
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):  # None: until a message comes
                    await self._wake.wait()
            except TimeoutError:
                return None
        if self._cut:
            msg = (
                f"in-process bus: subscription cut off with more than {self._limit} "
                "bytes unread (a slow subscriber, as Redis's output-buffer limit)"
            )
            raise ConnectionError(msg)
        if not self._buffer:
            return None
        message = self._buffer.popleft()
        if message["type"] == "message":
            self._bytes -= len(message["data"])
        return message

    async def aclose(self) -> None:
        """Leave the hub; what was unread is gone."""
        self._closed = True
        self._hub.leave(self)
        self._buffer.clear()
        self._bytes = 0

    def deliver(self, channel: str, data: bytes) -> bool:
        """Queue one message (from any thread); False if this subscription is gone."""
        loop = self._loop
        if loop is None or self._closed or self._cut:
            return False
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return self._receive(channel, data)
        try:  # a subscriber on another thread's loop: counted as sent, like Redis does
            loop.call_soon_threadsafe(self._receive, channel, data)
        except RuntimeError:  # its loop is closed: the subscriber is gone
            self._hub.leave(self)
            return False
        return True

    def _receive(self, channel: str, data: bytes) -> bool:
        if self._closed or self._cut:
            return False
        if self._bytes + len(data) > self._limit:
            # Redis closes a client past its output-buffer limit; so do we.
            self._cut = True
            self._hub.leave(self)
            self._buffer.clear()
            self._bytes = 0
            self._wake.set()
            return False
        self._push({"type": "message", "channel": channel, "data": data}, len(data))
        return True

    def _push(self, message: dict[str, Any], size: int) -> None:
        self._buffer.append(message)
        self._bytes += size
        self._wake.set()


class _Hub:
    """The channels of one in-process bus and their subscriptions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, set[_Subscription]] = {}

    def join(self, channel: str, subscription: _Subscription) -> None:
        with self._lock:
            self._channels.setdefault(channel, set()).add(subscription)

    def leave(self, subscription: _Subscription) -> None:
        with self._lock:
            for members in self._channels.values():
                members.discard(subscription)

    def publish(self, channel: str, data: bytes) -> int:
        with self._lock:
            members = list(self._channels.get(channel, ()))
        return sum(member.deliver(channel, data) for member in members)


_shared: weakref.WeakValueDictionary[str, _Hub] = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def _hub_named(name: str) -> _Hub:
    """The process's hub of that name: alive while any bus holds it."""
    with _shared_lock:
        hub = _shared.get(name)
        if hub is None:
            hub = _shared[name] = _Hub()
        return hub


class MemoryBus:
    """Publisher and subscription factory for one channel of an in-process hub."""

    def __init__(
        self, url: str, channel: str, *, timeout: float = 2.0, limit: int = SUBSCRIPTION_LIMIT
    ) -> None:
        name = memory_bus_name(url)
        self.url = url
        self.channel = channel
        self.timeout = timeout
        self.limit = limit
        self._hub = _hub_named(name) if name is not None else _Hub()

    async def publish(self, data: bytes, *, channel: str | None = None) -> int:
        """Deliver one message on ``channel`` (default: the bus's) to every current
        subscription of it; return how many."""
        return self._hub.publish(self.channel if channel is None else channel, bytes(data))

    async def ping(self) -> None:
        """Always answers: the hub lives in this process."""

    def subscription(self) -> _Subscription:
        """A new, not yet subscribed subscription of its own."""
        return _Subscription(self._hub, self.limit)

    async def pause(self, attempt: int) -> bool:
        """The backoff before a new subscription (a cut-off one): no failover here."""
        await asyncio.sleep(backoff(attempt))
        return False

    async def close(self) -> None:
        """Nothing to close: subscriptions leave the hub when their reader closes them."""
