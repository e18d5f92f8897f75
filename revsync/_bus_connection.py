"""The bus's Redis clients for one topology: publish, ping, new subscriptions, and the
wait between two subscription attempts, which follows a failover at once.

- One server: the reader waits its exponential backoff between attempts.
- Sentinel: a :class:`SentinelWatch` hears ``+switch-master``.  The reader's wait ends
  at once, a live subscription on another server is dropped, the announcing sentinel
  is asked first from now on, and the publisher's pool is closed, so its next command
  asks the sentinels anew: a demoted master that stays up keeps no node on it.
- Cluster: while the reader is disconnected it asks a random node for the primary of
  the channel's slot every 0.1-0.25 s, and tries again as soon as that primary changed
  or, having been unreachable, answers.  The publisher's view of the slot's primary
  (redis-py's, refreshed by MOVED and by connection errors) moving away from the
  subscription's drops the subscription too.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from revsync._backoff import backoff
from revsync._cluster_bus import ShardedPubSub, SlotOwner
from revsync._redis_topology import (
    Address,
    FollowingPubSub,
    Topology,
    cluster_errors,
    data_client,
    is_topology_url,
    node_kwargs,
    parse_topology_url,
    sentinel_manager,
)
from revsync._sentinel_bus import SentinelWatch

__all__ = ["OWNER_POLL", "BusConnection"]

OWNER_POLL: Final = (0.1, 0.25)
"""Seconds between two lookups of the slot's primary while the reader is
disconnected from a Cluster (uniform in this range, so a fleet does not ask in step)."""


class BusConnection:
    """The bus's clients for one topology: publish, ping, and new subscriptions.

    Publishing has one immediate retry (a pooled connection that died with a restart
    or failover) and no socket timeout: the caller bounds the whole command instead
    (``RedisBus`` does, with ``asyncio.timeout``).  With a socket timeout redis-py
    writes each command through ``asyncio.wait_for``, whose task puts the PUBLISH off
    until the event loop's next turn, a turn that takes milliseconds on a node busy
    with requests.  Subscribing has no read timeout and no silent retries, so a lost
    subscription surfaces as an error the reader counts.
    """

    def __init__(self, url: str, timeout: float) -> None:
        self.sharded = False
        self._timeout = timeout
        self._moved = asyncio.Event()
        """Set when the primary moved since the latest subscription was made."""
        self._subscriptions: weakref.WeakSet[FollowingPubSub] = weakref.WeakSet()
        self._watch: SentinelWatch | None = None
        self._sentinels: Sentinel | None = None
        self._slots: SlotOwner | None = None
        self._published_owner: Address | None = None
        self._topology: Topology | None = None
        publishing: dict[str, Any] = {
            "socket_timeout": None,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 1),
        }
        subscribing: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": None,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
        }
        if not is_topology_url(url):
            self.publisher: aioredis.Redis | RedisCluster = self._publisher(url)
            self.subscriber: aioredis.Redis | None = aioredis.Redis.from_url(url, **subscribing)
            return
        self._topology = topology = parse_topology_url(url)
        if topology.kind == "sentinel":
            assert topology.service is not None  # parse_topology_url checked it
            # One sentinel manager for both: reordering its sentinels after a switch
            # makes the publisher and the reader ask the announcing sentinel first.
            self._sentinels = sentinel_manager(topology, timeout)
            self.publisher = self._sentinels.master_for(
                topology.service, db=topology.db, **node_kwargs(topology, publishing)
            )
            self.subscriber = self._sentinels.master_for(
                topology.service, db=topology.db, **node_kwargs(topology, subscribing)
            )
            self._watch = SentinelWatch(topology, timeout, self._switched)
        else:
            self.sharded = True
            self.publisher = self._publisher(url)
            self.subscriber = None
            self._slots = SlotOwner(topology, timeout)

    def _publisher(self, url: str) -> aioredis.Redis | RedisCluster:
        retry = Retry(NoBackoff(), 1)
        return data_client(
            url, socket_timeout=None, socket_connect_timeout=self._timeout, retry=retry
        )

    async def publish(self, channel: str, data: bytes) -> int:
        """PUBLISH, or SPUBLISH in a Cluster; return how many subscribers received it."""
        with cluster_errors():
            if isinstance(self.publisher, RedisCluster):
                receivers: int = await self.publisher.spublish(channel, data)
                await self._publisher_view(channel)
            else:
                receivers = await self.publisher.publish(channel, data)
        return receivers

    async def ping(self) -> None:
        """Round trip to Redis (every primary in a Cluster)."""
        with cluster_errors():
            await self.publisher.ping()

    def subscription(self) -> PubSub:
        """A new, not yet subscribed PubSub on a connection of its own."""
        self._moved.clear()
        pubsub: FollowingPubSub
        if self._slots is not None and self._topology is not None:
            pubsub = ShardedPubSub(self._slots, self._topology, self._timeout)
        else:
            assert self.subscriber is not None
            if self._watch is not None:
                self._watch.start()
            pubsub = FollowingPubSub(connection_pool=self.subscriber.connection_pool)
        self._subscriptions.add(pubsub)
        return pubsub

    async def pause(self, attempt: int) -> bool:
        """Wait before subscription attempt ``attempt`` + 1; True if it ended early
        because the primary moved (the reader then starts its backoff over)."""
        if self._slots is not None:
            return await self._await_slot_owner(attempt)
        if self._watch is None:
            await asyncio.sleep(backoff(attempt))
            return False
        try:
            async with asyncio.timeout(backoff(attempt)):
                await self._moved.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Close every connection pool and stop watching."""
        if self._watch is not None:
            await self._watch.close()
        if self._slots is not None:
            await self._slots.release()
        await self.publisher.aclose()
        if self.subscriber is not None:
            await self.subscriber.aclose()
        if self._sentinels is not None:
            # The connections that asked the sentinels where the master is: the
            # master's clients do not own them, and nothing else would close them.
            for sentinel in self._sentinels.sentinels:
                await sentinel.aclose()

    # -- following the primary ------------------------------------------------------

    async def _moved_to(self, primary: Address) -> None:
        """Wake a waiting reader and drop every subscription not on ``primary``."""
        self._moved.set()
        for pubsub in list(self._subscriptions):
            await pubsub.move(primary)

    async def _switched(self, master: Address, sentinel: Address) -> None:
        """Sentinel announced a new master: follow it now."""
        assert self._sentinels is not None
        clients = self._sentinels.sentinels
        for i, client in enumerate(clients):
            kwargs = client.connection_pool.connection_kwargs
            if (kwargs.get("host"), kwargs.get("port")) == sentinel:
                clients.insert(0, clients.pop(i))
                break
        assert isinstance(self.publisher, aioredis.Redis)
        await self.publisher.connection_pool.disconnect()
        await self._moved_to(master)

    async def _publisher_view(self, channel: str) -> None:
        """After a publish: if redis-py's view of the channel's primary changed (a
        MOVED, a reconnect after a failure) and the subscription is elsewhere, follow."""
        assert isinstance(self.publisher, RedisCluster)
        assert self._slots is not None
        node = self.publisher.get_node_from_key(channel)
        if node is None:
            return
        owner = (str(node.host), int(node.port))
        if owner == self._published_owner:
            return
        first = self._published_owner is None
        self._published_owner = owner
        subscribed = self._slots.subscribed
        if not first and subscribed is not None and owner != subscribed:
            await self._moved_to(owner)

    async def _await_slot_owner(self, attempt: int) -> bool:
        """Cluster: until the slot's primary changed (from the one the latest attempt
        went to) or came back, look it up every OWNER_POLL; if it answered all along
        (the failure was elsewhere: an error reply counts as an answer) or no node
        answers at all, the plain backoff."""
        assert self._slots is not None
        if self._moved.is_set():
            return True
        deadline = time.monotonic() + backoff(attempt)
        # Compared with the primary the latest attempt went to, not the latest
        # subscription's: an attempt on the new owner that failed (it refuses clients
        # or the subscription) must not be retried at once, again and again.
        slot, attempted = self._slots.slot, self._slots.attempted
        unreachable = False
        try:
            while slot is not None:
                owner = await self._slots.find(slot)
                if owner is None:  # no node answers: the plain backoff
                    if time.monotonic() >= deadline:
                        return False
                elif attempted is not None and owner != attempted:
                    return True  # promoted, or the slot moved
                elif await self._slots.answers(owner):
                    if unreachable:
                        return True  # back
                    break
                else:
                    unreachable = True
                await asyncio.sleep(random.uniform(*OWNER_POLL))
        finally:
            await self._slots.release()
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        return False
