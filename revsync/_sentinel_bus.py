"""Following a Sentinel failover at once: the sentinels' ``+switch-master`` messages.

Without this the bus learns of a new master only when a connection to the old one
fails and a reconnect, after its backoff, asks the sentinels again; and a demoted
master that stays up (a ``SENTINEL FAILOVER``, or an old master cut off from the
sentinels) keeps its clients for seconds: measured with Redis 7.0, the old master
stays a master with its subscribers for about 10 s after ``+switch-master``, then
Sentinel makes it a replica and kills its pub/sub clients.  Meanwhile a node on it
is on an island: what it publishes reaches only the nodes still there.

:class:`SentinelWatch` keeps one extra connection, to one sentinel at a time,
subscribed to ``+switch-master``.  When the sentinel drops, hangs or refuses, it moves
on to the next one, with backoff.  On (re)subscribing it asks that sentinel where the
master is, so a switch announced while it was not listening is not missed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from revsync._backoff import backoff
from revsync._logging import get_logger
from revsync._redis_topology import Topology

logger = get_logger()

Address = tuple[str, int]
SWITCH_CHANNEL: Final = "+switch-master"
KEEPALIVE: Final = 5.0
"""Seconds of silence after which the watch PINGs its sentinel: a hung sentinel (no
answer within the timeout) is left for the next one."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SentinelWatch:
    """Calls ``on_switch(new_master, sentinel)`` whenever the master of ``service``
    changes, as the sentinels announce it."""

    def __init__(
        self,
        topology: Topology,
        timeout: float,
        on_switch: Callable[[Address, Address], Awaitable[None]],
    ) -> None:
        assert topology.service is not None  # parse_topology_url checked it
        self.service = topology.service
        self.master: Address | None = None
        """The master's address as last announced or asked for."""
        self._hosts = list(topology.hosts)
        self._kwargs: dict[str, Any] = {
            "username": topology.sentinel_username,
            "password": topology.sentinel_password,
            "socket_connect_timeout": timeout,
            "socket_timeout": None,  # a quiet channel is normal; KEEPALIVE finds a hung one
        }
        self._timeout = timeout
        self._on_switch = on_switch
        self._task: asyncio.Task[None] | None = None
        self._attempt = 0

    def start(self) -> None:
        """Start watching, if not already; outside an event loop (a client only built,
        not used), nothing."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="revsync-sentinel-watch")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        # Each node starts at a random sentinel, so a fleet spreads its watches.
        index = random.randrange(len(self._hosts))
        while True:
            host, port = self._hosts[index]
            try:
                await self._watch(host, port)
            except (RedisError, OSError) as exc:  # OSError includes TimeoutError
                logger.debug(
                    "revsync.sentinel_watch_lost",
                    sentinel=f"{host}:{port}",
                    error=f"{type(exc).__name__}: {exc}",
                )
            index = (index + 1) % len(self._hosts)
            await asyncio.sleep(backoff(self._attempt))
            self._attempt += 1

    async def _watch(self, host: str, port: int) -> None:
        client = aioredis.Redis(host=host, port=port, **self._kwargs)
        pubsub = client.pubsub()
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.subscribe(SWITCH_CHANNEL)
                where = await client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                )
            self._attempt = 0
            if where:
                await self._seen((_text(where[0]), int(where[1])), (host, port))
            await self._listen(pubsub, (host, port))
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()

    async def _listen(self, pubsub: Any, sentinel: Address) -> None:
        heard = time.monotonic()
        pinged: float | None = None
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, None
                if message["type"] == "message":
                    await self._announced(_text(message["data"]), sentinel)
            elif pinged is not None and now - pinged > self._timeout:
                msg = f"sentinel {sentinel[0]}:{sentinel[1]} did not answer a PING"
                raise TimeoutError(msg)
            elif pinged is None and now - heard > KEEPALIVE:
                pinged = now
                await pubsub.ping()

    async def _announced(self, data: str, sentinel: Address) -> None:
        """``<service> <old ip> <old port> <new ip> <new port>``."""
        parts = data.split()
        if len(parts) == 5 and parts[0] == self.service and parts[4].isdigit():
            await self._seen((parts[3], int(parts[4])), sentinel)

    async def _seen(self, master: Address, sentinel: Address) -> None:
        if self.master is None:
            self.master = master  # the first look: where it is, not a switch
            return
        if master != self.master:
            logger.info(
                "revsync.sentinel_switch",
                service=self.service,
                old=f"{self.master[0]}:{self.master[1]}",
                new=f"{master[0]}:{master[1]}",
                sentinel=f"{sentinel[0]}:{sentinel[1]}",
            )
            self.master = master
            await self._on_switch(master, sentinel)
