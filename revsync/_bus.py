"""The bus: Redis pub/sub carrying change events to every node.

Pub/sub is at-most-once: a subscriber that is away misses what was published
meanwhile, and redis-py may reconnect and re-subscribe without raising.  The bus
therefore only moves bytes; noticing and repairing loss is the subscriber's job.

:class:`Bus` is everything the rest of revsync asks of a bus: :class:`RedisBus`, and
``memory://``'s :class:`revsync._memory_bus.MemoryBus` for one process.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from redis.exceptions import RedisError

from revsync._bus_connection import BusConnection
from revsync._memory_bus import MemoryBus, is_memory_url
from revsync._redis_topology import hash_tag
from revsync._urls import mask_url
from revsync.config import validate_redis_url


class Subscription(Protocol):
    """One subscriber connection, as redis-py's PubSub: subscribe, then read."""

    async def subscribe(self, *channels: str) -> None:
        """Subscribe to every channel at once; each is confirmed by a ``subscribe``
        message naming it."""

    async def get_message(
        self,
        *,
        timeout: float | None = ...,  # noqa: ASYNC109 - PubSub's signature
    ) -> dict[str, Any] | None:
        """A ``subscribe`` confirmation, a ``message`` (bytes in ``data``), or None;
        either names its ``channel``."""

    async def aclose(self) -> None: ...


class Bus(Protocol):
    """Publish bytes on one channel, and open subscriptions to it."""

    url: str
    channel: str
    timeout: float

    async def publish(self, data: bytes, *, channel: str | None = None) -> int:
        """Deliver one message on ``channel`` (default: the bus's); how many subscribers
        received it.  BusError if not."""

    async def ping(self) -> None:
        """Raise BusError if the bus does not answer."""

    def subscription(self) -> Subscription:
        """A new, not yet subscribed subscription on a connection of its own."""

    async def pause(self, attempt: int) -> bool:
        """Wait before the reader's next subscription attempt after ``attempt`` failed
        ones: a backoff, cut short when the bus sees its primary move (then True)."""

    async def close(self) -> None: ...


SINGLE_PROCESS_HINT = (
    "the bus does not answer; for a single process (one node, an app's tests) set "
    "REVSYNC_REDIS_URL=memory:// to run without Redis (only this process is kept in sync)"
)


def ping_channel(channel: str, node_id: str) -> str:
    """The channel a node's heartbeats travel on: its own, so that no node receives
    another's, and in the shared channel's Cluster slot, so that one subscription (one
    connection, one shard) carries both and a ping back proves that very link.

    ``channel:ping:node`` if ``channel`` has a Redis Cluster hash tag (``{...}``, not
    empty), else ``{channel}:ping:node`` (config refuses a channel with ``}`` and no
    hash tag: no tag could then give both the same slot).
    """
    if hash_tag(channel) is not None:
        return f"{channel}:ping:{node_id}"
    return f"{{{channel}}}:ping:{node_id}"


def bus_from_url(url: str, channel: str, *, timeout: float = 2.0) -> Bus:
    """The bus REVSYNC_REDIS_URL names: ``memory://[name]`` in process, else Redis."""
    if is_memory_url(url):
        return MemoryBus(url, channel, timeout=timeout)
    return RedisBus(url, channel, timeout=timeout)


class BusError(Exception):
    """Publishing failed: Redis unreachable, hung past the timeout, or refusing."""


class RedisBus:
    """Publisher and subscription factory for one Redis channel."""

    def __init__(self, url: str, channel: str, *, timeout: float = 2.0) -> None:
        self.url = mask_url(validate_redis_url(url))
        """The URL with any password masked: it goes into logs, errors and status."""
        self.channel = channel
        self.timeout = timeout
        # One server, the Sentinel master or a Cluster (SPUBLISH/SSUBSCRIBE), by URL
        # scheme.  Publishing: bounded timeouts so a hung Redis cannot hold a logout
        # for long; one immediate retry survives a pooled connection that died with a
        # Redis restart.  Subscribing: no read timeout (a quiet channel is normal)
        # and no silent retries, so a dropped connection surfaces as an error we can
        # count.  See revsync/_bus_connection.py.
        self._connection = BusConnection(url, timeout)

    async def publish(self, data: bytes, *, channel: str | None = None) -> int:
        """Publish one message on ``channel`` (default: the bus's); return how many
        subscribers received it.

        The message is written before this first yields to the event loop (no task in
        between: see BusConnection); ``timeout`` bounds the whole of it, retry included.
        """
        channel = self.channel if channel is None else channel
        try:
            async with asyncio.timeout(self.timeout):
                receivers = await self._connection.publish(channel, data)
        except (RedisError, OSError) as exc:  # OSError includes TimeoutError
            msg = f"publish to Redis channel {channel!r} failed: {str(exc) or 'timed out'}"
            raise BusError(msg) from exc
        return receivers

    async def ping(self) -> None:
        """Round-trip to Redis; raises BusError if it does not answer in time."""
        try:
            async with asyncio.timeout(self.timeout):
                await self._connection.ping()
        except (RedisError, OSError) as exc:
            msg = f"Redis at {self.url} did not answer: {str(exc) or 'timed out'}"
            raise BusError(msg) from exc

    def subscription(self) -> Subscription:
        """A new, not yet subscribed PubSub on its own connection."""
        return self._connection.subscription()

    async def pause(self, attempt: int) -> bool:
        """The backoff; with Sentinel or Cluster it ends when the primary has moved
        (see revsync/_bus_connection.py)."""
        return await self._connection.pause(attempt)

    async def close(self) -> None:
        """Close both connection pools."""
        await self._connection.close()
