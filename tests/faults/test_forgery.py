"""Issue 5, item 8: forged, damaged, replayed and reordered messages on the channel.

With REVSYNC_EVENT_KEY set, an attacker who can publish on the channel (but has not
the key) sends unsigned, wrongly signed, truncated, oversized and tampered messages,
replays captured genuine ones and sends them out of order.  An insider *with* the key
sends signed unrevokes for tokens the store says are revoked.  None of it may change
any node's decision for those tokens, each message is counted by reason, and the
nodes keep applying genuine traffic.  The resync timer is at 600 s, so nothing is
quietly repaired behind the test's back.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis.asyncio as aredis

from revsync.events import MAX_EVENT_BYTES, Op, RevocationEvent, decode_event, encode_event
from tests.engine.conftest import NodeFactory, claims, eventually

KEY = b"k" * 32


async def test_forged_and_replayed_messages_change_no_decision(
    make_node: NodeFactory, store_url: str, redis_url: str, channel: str, figures: dict[str, Any]
) -> None:
    a = await make_node(store_url, event_key=KEY, resync_interval=600)
    b = await make_node(store_url, event_key=KEY, resync_interval=600)
    c = await make_node(store_url, event_key=KEY, resync_interval=600)
    client = aredis.Redis.from_url(redis_url)
    tap = client.pubsub()
    await tap.subscribe(channel)
    captured: list[bytes] = []

    async def record() -> None:
        async for message in tap.listen():
            if message["type"] == "message" and len(captured) < 4:
                event = decode_event(message["data"], KEY)
                if event.op is not Op.PING:
                    captured.append(message["data"])

    recorder = asyncio.create_task(record())
    x, y = claims(identity="xavier"), claims(identity="yves")
    await a.revoke(x)
    await a.unrevoke(str(x["jti"]))
    await a.revoke(x)  # the store's final word on x: revoked
    change_y = await a.revoke(y)
    await eventually(lambda: len(captured) == 4, within=3)
    victims = [x, y]
    nodes = [a, b, c]
    await eventually(lambda: all(n.is_revoked(t) for n in nodes for t in victims), within=3)
    unrevoke_x = captured[1]
    head = await a.store.head()

    def forged_unrevoke(seq: int, jti: str, key: bytes | None) -> bytes:
        event = RevocationEvent.from_change(
            change_y._replace(seq=seq, key=jti, revoked=False), "mallory", time.time()
        )
        return encode_event(event, key)

    tampered = json.loads(captured[3])
    tampered["op"] = "unrevoke"  # the signature no longer matches
    attacks: list[tuple[str, list[bytes]]] = [
        ("unsigned", [forged_unrevoke(head + 1, str(y["jti"]), None)]),
        ("bad_signature", [forged_unrevoke(head + 1, str(y["jti"]), b"w" * 32)]),
        ("bad_signature", [json.dumps(tampered).encode()]),
        ("not_json", [captured[3][: len(captured[3]) // 2]]),
        ("too_large", [captured[3] + b" " * MAX_EVENT_BYTES]),
        ("replayed", [unrevoke_x] * 5),
        ("reordered", list(reversed(captured))),
        # An insider holding the key: signed unrevokes are still only doorbells.
        ("signed_forged_unrevoke", [forged_unrevoke(head + 1, str(x["jti"]), KEY)]),
        ("signed_forged_unrevoke", [forged_unrevoke(head + 2, str(y["jti"]), KEY)]),
    ]
    expected_rejects = {
        "unsigned": 1,
        "bad_signature": 2,
        "not_json": 1,
        "too_large": 1,
        "unconfirmed_doorbell": 2,
    }
    before_dup = [n.stats.duplicates for n in nodes]
    flips = 0
    for _, messages in attacks:
        for message in messages:
            await client.publish(channel, message)
        # Watch the decisions while the nodes digest it.
        for _ in range(20):
            flips += sum(not n.is_revoked(t) for n in nodes for t in victims)
            await asyncio.sleep(0.005)

    def counted() -> bool:
        return all(
            all(n.stats.rejected[r] == k for r, k in expected_rejects.items()) for n in nodes
        )

    await eventually(counted, within=3)
    # Replays and the reversed history are dropped by seq as already applied.
    replays = 5 + len(captured)
    await eventually(
        lambda: all(
            n.stats.duplicates - d >= replays for n, d in zip(nodes, before_dup, strict=True)
        ),
        within=3,
    )
    await asyncio.sleep(0.2)
    assert flips == 0
    assert all(n.is_revoked(t) for n in nodes for t in victims)
    # Still alive and applying genuine traffic.
    z = claims()
    await c.revoke(z)
    await eventually(lambda: a.is_revoked(z) and b.is_revoked(z), within=2)
    recorder.cancel()
    await asyncio.gather(recorder, return_exceptions=True)
    await tap.aclose()
    await client.aclose()
    figures.update(
        {
            f"{b.store.url.split(':')[0]}": {
                "rejected": dict(b.stats.rejected),
                "duplicates": b.stats.duplicates - before_dup[1],
                "decisions_sampled": 20 * len(attacks) * len(nodes) * len(victims),
                "decisions_flipped": flips,
            }
        }
    )
