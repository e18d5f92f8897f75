"""Attack 7 (bus, a stolen key): heartbeat nonces are predictable, so an attacker keeps
a node that cannot publish reporting itself in sync.

Guarantee 5 (docs/design.md): confirmed sync needs "one of the node's own heartbeats
back over the bus.  A heartbeat is a ping carrying a fresh nonce; only a nonce this
node sent and has not seen back counts, so neither a (re)subscription, another node's
ping nor a replayed old ping can pass for one."

The nonce is ``f"{instance}.{counter}"`` (``Subscriber._publish_heartbeat``): the
instance id is in clear in every ping the node has published, and the counter goes up
by one per ping.  After seeing one ping, anyone who can publish a valid message (no
key configured, or a stolen key) can send the node's *next* nonces before the node's
own pings would have come back.

Scenario: node X runs as a least-privilege ACL user (docs/security.md).  The attacker
records one of X's pings.  Then X loses the right to publish (the operator edits the
ACL; any fault that breaks X's publishing path does the same): its revocations and its
heartbeats no longer reach the bus.  Without the attacker, X goes stale within
``REVSYNC_MAX_STALENESS`` (2 s here) and says so.  With the attacker publishing X's
predicted nonces every 100 ms, X keeps ``stale=False`` / ``ready=True`` indefinitely --
while a revocation it makes is not announced (``publish_failures``): other nodes hear
of it only on their resync timer.

Root cause: revsync/_subscriber.py ``Subscriber._publish_heartbeat`` (nonces derived from
a published instance id and a counter instead of unpredictable per-ping values).
Severity: status/readiness dishonesty (the node claims a working bus it does not have;
its own revocations reach other nodes only by their resync timer).  Failed before the fix; kept as
a regression test.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aredis

from revsync.events import Op, RevocationEvent, decode_event, encode_event
from tests.attacks.acl import node_acl
from tests.conftest import RedisServer
from tests.engine.conftest import NodeFactory, claims

KEY = b"stolen-key-" + b"s" * 21
PASSWORD = "node-password-of-at-least-32-chars!"


async def test_a_node_that_cannot_publish_is_not_kept_in_sync_by_forged_pings(
    make_node: NodeFactory, redis_server: RedisServer, sqlite_url: str, channel: str
) -> None:
    admin = aredis.Redis(port=redis_server.port)
    await admin.execute_command("ACL", "SETUSER", "x-node", *node_acl(channel, PASSWORD))
    x_url = f"redis://x-node:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    settings = {
        "event_key": KEY,
        "heartbeat_interval": 0.5,
        "max_staleness": 2.0,
        "resync_interval": 0.5,
    }
    x = await make_node(sqlite_url, redis_url=x_url, node_id="x", **settings)

    tap = admin.pubsub()
    # X's pings travel on its own ping channel; the attacker listens and forges there.
    await tap.subscribe(x.subscriber.ping_channel)
    nonce = None
    deadline = time.monotonic() + 5
    while nonce is None and time.monotonic() < deadline:
        message = await tap.get_message(timeout=0.5)
        if message and message["type"] == "message":
            event = decode_event(message["data"], KEY)
            if event.op is Op.PING and event.origin == "x":
                nonce = event.key
    await tap.aclose()
    assert nonce is not None, "no ping of X seen"
    instance, _, counter = nonce.rpartition(".")
    # X's next nonces if they can be predicted (an instance id and a counter); if not,
    # all the attacker has is the nonce it saw.
    guesses = (
        [f"{instance}.{n}" for n in range(int(counter) + 1, int(counter) + 50)]
        if counter.isdigit()
        else [nonce]
    )

    stop = asyncio.Event()  # redis-py can swallow a cancel landing mid-command

    async def forge() -> None:
        # Sent again and again: each counts once, when X expects it.
        while not stop.is_set():
            pipe = admin.pipeline(transaction=False)
            for guess in guesses:
                ping = RevocationEvent.ping("x", guess, time.time())
                pipe.publish(x.subscriber.ping_channel, encode_event(ping, KEY))
            await pipe.execute()
            await asyncio.sleep(0.1)

    await admin.execute_command("ACL", "SETUSER", "x-node", "-publish")
    # Control: without the forger, X notices within REVSYNC_MAX_STALENESS.
    await asyncio.sleep(3.0)
    assert x.status()["stale"]
    forger = asyncio.create_task(forge())
    try:
        await asyncio.sleep(3 * 2.0)  # three times REVSYNC_MAX_STALENESS
        token = claims()
        await x.revoke(token)  # durable, applied on X; its announcement is refused
        await asyncio.sleep(1.0)
        status = x.status()
    finally:
        stop.set()
        forger.cancel()
        await asyncio.wait({forger}, timeout=5)
        await admin.aclose()

    assert x.stats.publish_failures >= 1
    assert status["stale"], (
        f"X has not been able to publish (heartbeats or revocations) for 10 s, its "
        f"revocation was not announced, yet X reports stale=False, "
        f"ready={status['ready']}, seconds_since_sync={status['seconds_since_sync']}: "
        f"the attacker sent X's predicted nonces {guesses[:2]}..."
    )
