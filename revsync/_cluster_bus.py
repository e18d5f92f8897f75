"""The bus on a Redis Cluster: sharded pub/sub on the primary that owns the channel's
slot, and finding that primary again after a failover.

:class:`SlotOwner` asks a random reachable node (the URL's nodes and those its answers
named) which primary serves a slot (``CLUSTER SLOTS``), so that neither a dead
startup node nor a fleet asking the same node stands in the way.  Its connections
are opened for a lookup and closed once the subscription is back, so an idle node
holds none.

:class:`ShardedPubSub` subscribes with SSUBSCRIBE on that primary.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from revsync._redis_topology import (
    Address,
    FollowingPubSub,
    Topology,
    check_sharded_pubsub,
    node_pool,
    server_version,
)

__all__ = ["ShardedPubSub", "SlotOwner", "channel_slot"]


def channel_slot(channel: str) -> int:
    """The Cluster slot of ``channel`` (its hash tag's, if it has one)."""
    return key_slot(channel.encode())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SlotOwner:
    """Which primary serves a slot, asked of a random reachable Cluster node."""

    def __init__(self, topology: Topology, timeout: float) -> None:
        self._topology = topology
        self._timeout = timeout
        self._known: set[Address] = set(topology.hosts)
        self._clients: dict[Address, aioredis.Redis] = {}
        self.slot: int | None = None
        """The slot of the channel the latest subscription was for."""
        self.subscribed: Address | None = None
        """The primary the latest subscription was made on."""
        self.attempted: Address | None = None
        """The primary the latest subscription attempt went to, whether it succeeded
        or not: a new owner is hurried to once, not after every failed attempt."""

    def client(self, address: Address) -> aioredis.Redis:
        """A client for ``address``, kept until :meth:`release`."""
        client = self._clients.get(address)
        if client is None:
            pool = node_pool(self._topology, self._timeout, address)
            client = self._clients[address] = aioredis.Redis(connection_pool=pool)
        return client

    async def find(self, slot: int) -> Address | None:
        """The primary serving ``slot`` according to the first node that answers, in
        random order; None if none answers or none knows."""
        for address in random.sample(sorted(self._known), len(self._known)):
            try:
                async with asyncio.timeout(self._timeout):
                    client = self.client(address)
                    slots = await client.execute_command(  # type: ignore[no-untyped-call]
                        "CLUSTER", "SLOTS"
                    )
            except (RedisError, OSError):
                continue
            owner = self._learn(slots, slot, address)
            if owner is not None:
                return owner
        return None

    def _learn(self, slots: list[Any], slot: int, asked: Address) -> Address | None:
        """Remember every node ``slots`` names; return the primary serving ``slot``."""
        owner = None
        for start, end, *nodes in slots:
            for node in nodes:
                host = _text(node[0])
                # An empty or "?" endpoint: the node we asked, as Redis documents.
                address = asked if host in ("", "?") else (host, int(node[1]))
                self._known.add(address)
                if node is nodes[0] and int(start) <= slot <= int(end):
                    owner = address
        return owner

    async def answers(self, address: Address) -> bool:
        """Whether ``address`` answers a PING within the timeout.  An error reply
        (``maxclients`` reached, an ACL) is an answer: the server is up, and what went
        wrong is not a failover to wait out."""
        try:
            async with asyncio.timeout(self._timeout):
                await self.client(address).ping()
        except ResponseError:
            return True
        except (RedisError, OSError):
            return False
        return True

    async def release(self) -> None:
        """Close every connection opened for lookups."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose(close_connection_pool=True)


class ShardedPubSub(FollowingPubSub):
    """A PubSub on the primary that owns the channels' slot, speaking SSUBSCRIBE.

    It looks the owner up afresh on every ``subscribe`` (so a new subscription after
    a failover finds the promoted replica) and reports ``ssubscribe``/``smessage`` as
    ``subscribe``/``message``, so a reader written for PUBLISH/SUBSCRIBE works
    unchanged.  When the server moves the slot away (``sunsubscribe`` it did not ask
    for) it raises ConnectionError, so the reader reconnects and catches up.
    """

    def __init__(self, owner: SlotOwner, topology: Topology, timeout: float) -> None:
        self._owner = owner
        self._topology = topology
        self._timeout = timeout
        super().__init__(connection_pool=node_pool(topology, timeout, topology.hosts[0]))

    async def subscribe(self, *args: Any, **kwargs: Any) -> None:
        """SSUBSCRIBE the channels on their shard's current primary (they must share a
        slot: revsync's channel and this node's ping channel do)."""
        self._owner.slot = slot = channel_slot(args[0])
        owner = await self._owner.find(slot)
        if owner is None:
            msg = f"no Redis Cluster node told which primary serves channel {args[0]!r}"
            raise RedisConnectionError(msg)
        self._owner.attempted = owner
        try:
            info = await self._owner.client(owner).info("server")
            check_sharded_pubsub(server_version(info), f"{owner[0]}:{owner[1]}")
        finally:
            await self._owner.release()
        await self.connection_pool.disconnect()
        self.connection_pool = node_pool(self._topology, self._timeout, owner)
        await self.ssubscribe(*args, **kwargs)
        self._owner.subscribed = owner

    async def get_message(
        self,
        ignore_subscribe_messages: bool = False,
        timeout: float | None = 0.0,  # noqa: ASYNC109 - PubSub's own signature
    ) -> dict[str, Any] | None:
        """The next message, with sharded types renamed to their classic names."""
        message = await super().get_message(ignore_subscribe_messages, timeout)
        if message is None:
            return None
        kind = message["type"]
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "sunsubscribe":  # never asked for: the server moved the slot
            msg = "the channel's slot moved to another Redis Cluster node"
            raise RedisConnectionError(msg)
        message["type"] = {"smessage": "message", "ssubscribe": "subscribe"}.get(kind, kind)
        return message

    async def aclose(self) -> None:
        """Close the connection and the pool of this subscription."""
        await super().aclose()  # type: ignore[no-untyped-call]
        await self.connection_pool.disconnect()
