"""RedisBus's publisher against a real redis-server: the PUBLISH leaves at once, and a
hung Redis costs a publish at most the bus's timeout."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import redis

from revsync._bus import BusError, RedisBus
from tests.conftest import RedisServer


async def test_a_publish_is_written_before_the_event_loop_turns(
    redis_url: str, channel: str
) -> None:
    """No task stands between ``publish()`` and the write: on a node busy with requests
    every turn of the event loop takes milliseconds, and the publisher's ``sent_at`` is
    stamped before it (redis-py's socket timeout would send through asyncio.wait_for,
    whose task waits for the next turn)."""
    bus = RedisBus(redis_url, channel)
    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.subscribe(channel)
    try:
        await bus.publish(b"warm-up: the connection exists")
        before = asyncio.all_tasks()
        publish = asyncio.create_task(bus.publish(b"at once"))
        await asyncio.sleep(0)  # the publish runs until it waits for Redis's answer
        extra = asyncio.all_tasks() - before - {publish}
        assert extra == set(), [t.get_coro() for t in extra]
        assert await publish == 1
        got = []
        while len(got) < 2:
            message = listener.get_message(timeout=5)
            assert message is not None
            if message["type"] == "message":
                got.append(message["data"])
        assert got == [b"warm-up: the connection exists", b"at once"]
    finally:
        listener.close()
        await bus.close()


async def test_a_hung_redis_costs_a_publish_the_bus_timeout_and_no_more(
    redis_server: RedisServer, channel: str
) -> None:
    bus = RedisBus(redis_server.url, channel, timeout=0.5)
    assert redis_server.proc is not None
    pid = redis_server.proc.pid
    try:
        assert await bus.publish(b"before") == 0
        os.kill(pid, signal.SIGSTOP)
        try:
            # Without the bus's own bound the publisher waits for ever (no socket
            # timeout); the outer timeout turns such a hang into a failure.
            async with asyncio.timeout(10):
                with pytest.raises(BusError, match="timed out"):
                    await bus.publish(b"while hung")
                with pytest.raises(BusError, match="timed out"):
                    await bus.ping()
        finally:
            os.kill(pid, signal.SIGCONT)
        # The connection the timeout interrupted is gone; the next publish gets a new one.
        assert await bus.publish(b"after") == 0
        await bus.ping()
    finally:
        await bus.close()
