"""The fan-out benchmark's cheap subscribers, and the capacity model built on its figures.

The subscribers read RESP by hand; if they misread it, the propagation figures of
docs/scale.md would be wrong (or silently short of messages).  The model is
arithmetic; these check it against its own definitions.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from bench import capacity, fanout, fanout_clients
from revsync.events import encode_event


def test_resp_arrays_are_taken_whole_and_kept_when_partial() -> None:
    push = fanout_clients.command(b"message", b"chan", b'{"ts":1.5,"x":"\r\n"}')
    confirm = b"*3\r\n$9\r\nsubscribe\r\n$4\r\nchan\r\n:1\r\n"
    buf = bytearray(confirm + push + push[:-7])
    taken = fanout_clients.take_arrays(buf)
    assert taken == [
        [b"subscribe", b"chan", 1],
        [b"message", b"chan", b'{"ts":1.5,"x":"\r\n"}'],  # a CRLF inside a payload
    ]
    assert bytes(buf) == push[:-7]  # the incomplete one waits for the rest
    buf += push[-7:]
    assert fanout_clients.take_arrays(buf) == [[b"message", b"chan", b'{"ts":1.5,"x":"\r\n"}']]
    assert buf == bytearray()


def test_subscribers_receive_every_revocation_with_its_lag(redis_url: str) -> None:
    """Real Redis, real subscriber process: every publish is counted once per
    connection, and each lag is small and positive."""
    target = urlsplit(redis_url)
    channel = f"revsync-fanout-test-{time.time_ns()}"
    # fork, not spawn: spawn starts multiprocessing's resource tracker, which would
    # outlive the test in this process (the bench itself runs in a process of its own).
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(
        target=fanout_clients.subscribers,
        args=(theirs, target.hostname, target.port, channel),
        daemon=True,
    )
    proc.start()
    client = redis.Redis.from_url(redis_url)
    try:
        mine.send(("add", 5))
        assert mine.poll(30)
        assert mine.recv() == 5
        mine.send(("listen", None))
        for seq in range(1, 21):
            data = encode_event(fanout.revocation(seq, time.time()), fanout.EVENT_KEY)
            assert client.publish(channel, data) == 5
        time.sleep(0.5)
        mine.send(("stop", None))
        assert mine.poll(30)
        lags, counts = mine.recv()
    finally:
        mine.send(("quit", None))
        proc.join(10)
        client.close()
    assert counts == [20] * 5
    assert len(lags) == 100
    assert all(0 < lag < 5 for lag in lags)


@pytest.fixture
def bus() -> capacity.Bus:
    # 80 µs per message + 7 µs per subscriber, 315 bytes per delivery, 21 µs to decode.
    return capacity.Bus(80.0, 7.0, 315.0, 21.0)


def test_heartbeats_grow_the_bus_in_proportion_to_the_fleet(bus: capacity.Bus) -> None:
    # 1,000 nodes, 10 revocations/s, a ping per node per second on its own channel:
    # 1,010 messages/s; each revocation costs 80 + 7,000 µs, each ping 80 + 7 µs.
    assert bus.messages(1000, 10, 1) == 1010
    assert bus.deliveries(1000, 10, 1) == 10 * 1000 + 1000
    assert bus.cores(1000, 10, 1) == pytest.approx((10 * 7080 + 1000 * 87) / 1e6)
    assert bus.cores(2000, 0, 1) / bus.cores(1000, 0, 1) == pytest.approx(2)


def test_max_nodes_and_min_heartbeat_are_where_the_budget_is_reached(bus: capacity.Bus) -> None:
    for rate, beat in ((10, 1), (100, 5), (10, 30)):
        n = bus.max_nodes(rate, beat, 0.5)
        assert bus.cores(n, rate, beat) == pytest.approx(0.5)
        assert bus.min_heartbeat(n, rate, 0.5) == pytest.approx(beat)
    # So many nodes that the revocations alone need more than the budget.
    assert bus.min_heartbeat(10_000, 10, 0.5) is None


def test_the_generated_block_replaces_only_what_lies_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "scale.md"
    begin, end = capacity.MARKERS
    doc.write_text(f"# Title\n\nbefore\n{begin}\nold figures\n{end}\nafter\n")
    capacity.write(doc, f"{begin}\nnew figures\n{end}")
    assert doc.read_text() == f"# Title\n\nbefore\n{begin}\nnew figures\n{end}\nafter\n"
