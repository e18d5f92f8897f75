"""The in-process bus keeps the contract the subscriber relies on from Redis pub/sub."""

from __future__ import annotations

import asyncio
import threading

import pytest

from revsync._bus import RedisBus, bus_from_url
from revsync._memory_bus import MemoryBus
from revsync.config import SettingError, validate_redis_url


async def test_a_subscription_confirms_then_receives_what_is_published_after() -> None:
    bus = MemoryBus("memory://", "chan")
    assert await bus.publish(b"before") == 0  # nobody listens yet: lost, as in Redis
    sub = bus.subscription()
    await sub.subscribe("chan")
    assert await bus.publish(b"one") == 1
    first = await sub.get_message(timeout=0.1)
    assert first is not None
    assert (first["type"], first["channel"]) == ("subscribe", "chan")
    second = await sub.get_message(timeout=0.1)
    assert second is not None
    assert (second["type"], second["data"]) == ("message", b"one")
    assert await sub.get_message(timeout=0.05) is None
    await sub.aclose()
    assert await bus.publish(b"after close") == 0


async def test_a_waiting_reader_is_woken_by_a_publish() -> None:
    bus = MemoryBus("memory://", "chan")
    sub = bus.subscription()
    await sub.subscribe("chan")
    await sub.get_message(timeout=0)  # the confirmation
    reader = asyncio.create_task(sub.get_message(timeout=5))
    await asyncio.sleep(0.01)
    await bus.publish(b"x")
    message = await asyncio.wait_for(reader, 1)
    assert message is not None
    assert message["data"] == b"x"


async def test_private_and_named_hubs() -> None:
    private_a, private_b = MemoryBus("memory://", "c"), MemoryBus("memory://", "c")
    named_a, named_b = MemoryBus("memory://team", "c"), MemoryBus("memory://team", "c")
    other_channel = MemoryBus("memory://team", "elsewhere")
    subs = {}
    for name, bus in [("pa", private_a), ("pb", private_b), ("na", named_a), ("nb", named_b)]:
        subs[name] = bus.subscription()
        await subs[name].subscribe("c")
    # memory:// is the bus's own; memory://name is shared by name; channels stay apart.
    assert await private_a.publish(b"p") == 1
    assert await named_a.publish(b"n") == 2
    assert await other_channel.publish(b"o") == 0


async def test_a_slow_subscriber_is_cut_off_not_grown_without_bound() -> None:
    bus = MemoryBus("memory://", "chan", limit=1000)
    slow, fast = bus.subscription(), bus.subscription()
    await slow.subscribe("chan")
    await fast.subscribe("chan")
    await fast.get_message(timeout=0)
    for _ in range(10):
        assert await bus.publish(b"x" * 100) == 2
        assert (await fast.get_message(timeout=0) or {}).get("data") == b"x" * 100
    # The eleventh message would put 1,100 unread bytes in the slow one's buffer.
    assert await bus.publish(b"x" * 100) == 1
    assert (await fast.get_message(timeout=0) or {}).get("data") == b"x" * 100
    with pytest.raises(ConnectionError, match="cut off"):
        await slow.get_message(timeout=0)
    assert slow._bytes == 0  # what it held is freed
    # A new subscription (the reader's reconnect) works again.
    again = bus.subscription()
    await again.subscribe("chan")
    assert await bus.publish(b"y") == 2


async def test_a_subscription_on_another_event_loop_is_woken_thread_safely() -> None:
    bus = MemoryBus("memory://", "chan")
    got: list[bytes] = []
    subscribed = threading.Event()

    async def other_loop() -> None:
        sub = bus.subscription()
        await sub.subscribe("chan")
        await sub.get_message(timeout=0)
        subscribed.set()
        message = await sub.get_message(timeout=5)
        got.append(message["data"] if message else b"")
        await sub.aclose()

    thread = threading.Thread(target=asyncio.run, args=(other_loop(),))
    thread.start()
    await asyncio.to_thread(subscribed.wait, 5)
    assert await bus.publish(b"across") == 1
    await asyncio.to_thread(thread.join, 5)
    assert got == [b"across"]


def test_the_url_picks_the_bus() -> None:
    assert isinstance(bus_from_url("memory://", "c"), MemoryBus)
    assert isinstance(bus_from_url("memory://shared.name_1-2", "c"), MemoryBus)
    assert isinstance(bus_from_url("redis://127.0.0.1:1/0", "c"), RedisBus)


@pytest.mark.parametrize("url", ["memory://", "memory://shared", "MEMORY://a.b-c_d"])
def test_memory_urls_are_valid_settings(url: str) -> None:
    assert validate_redis_url(url) == url


@pytest.mark.parametrize(
    "url", ["memory:///", "memory://a/b", "memory://a?x=1", "memory://a b", "memory://a:1"]
)
def test_malformed_memory_urls_name_the_key_and_the_forms(url: str) -> None:
    with pytest.raises(SettingError, match=r"REVSYNC_REDIS_URL=.*memory://name"):
        validate_redis_url(url)


def test_an_unknown_scheme_lists_every_form_including_memory() -> None:
    with pytest.raises(SettingError) as caught:
        validate_redis_url("amqp://h/0")
    text = str(caught.value)
    for form in ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://"):
        assert form in text
    assert "memory:// (this process only) or memory://name" in text
