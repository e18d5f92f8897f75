"""Attack 3 (bus, no key or a stolen key): forged messages move a node's bus cursor
past the store's head for good; in allowlist mode the node then refuses freshly issued
tokens instead of waiting for their registration.

docs/design.md: "A node never lets a token in on the bus's word, and sheds anything
the bus alone told it by the next catch-up"; a forged revoke "refuses [a token] on
every node until their next catch-up ... then it is shed".  revsync/registry.py:
"a node that has not applied that seq yet waits for it (at most
REVSYNC_ALLOWLIST_WAIT seconds ...) instead of refusing, so the first request to
another node right after login succeeds".

Scenario: nodes A and B in allowlist mode share a store.  An attacker publishes 50
forged ``revoke`` messages for random jtis numbered store_head+1, +2, ... +50.  Each is
"in sequence", so B applies it as an overlay and moves ``bus_seq`` (the cursor that
says which registrations B has applied) one step.  B's next catch-ups shed every
overlay -- but ``bus_seq`` is never lowered (``catch_up`` only raises it to
``store_seq``), so B keeps claiming it applied seqs the store has never handed out
(``status()["last_applied_seq"]`` > the store's head).

A user then logs in on A (``issue_tokens``, registration numbered head+1) and uses the
token on B at once; B's read of the registration (the ``issue`` doorbell) is a little
late (held 0.3 s at B's store ``get``, well within ``REVSYNC_ALLOWLIST_WAIT`` = 1 s).
Without the forgery B waits and accepts the token (checked first, as the control).
After it, ``Registry.is_refused`` sees ``rsq <= bus_seq`` and refuses the token at once:
every login's first request to another node fails until the store's head passes the
forged cursor (50 writes here; a longer flood pushes it as far as it likes).

Root cause: revsync/_replica.py ``Replica.apply_event`` (an unconfirmed bus restriction
advances ``bus_seq``) and ``Replica.catch_up`` (``bus_seq = max(bus_seq, store_seq)``
never sheds it); revsync/registry.py ``Registry.is_refused`` trusts ``bus_seq``.
Refusal only (no revoked token is accepted).  Failed before the fix; kept as a regression test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from typing import Any

import jwt
import redis.asyncio as aredis
from quart import Quart

from revsync import RevSync
from revsync.events import Op, RevocationEvent, encode_event
from revsync.jwt import JWTManager
from tests.engine.conftest import eventually, make_app
from tests.regressions.conftest import AppNodeFactory, GatedStore

FORGED = 50
SECRET = "x" * 32  # make_app's JWT_SECRET_KEY
ALLOWLIST: dict[str, Any] = {
    "track_tokens": True,
    "mode": "allowlist",
    "allowlist_wait": 1.0,
    "resync_interval": 600,
}


async def first_request_on_b(app_a: Quart, a: RevSync, b: RevSync, gated: GatedStore) -> bool:
    """Log in on A and use the access token on B at once, while B's read of the
    registration is held 0.3 s.  True if B refused it, False if it accepted it."""
    hold = gated.hold("get")
    async with app_a.app_context():
        issued = await a.registry.issue_tokens("alice", refresh=False)
    claims = jwt.decode(issued.access_token, SECRET, algorithms=["HS256"])
    asyncio.get_running_loop().call_later(0.3, hold.release)
    assert b.registry is not None
    verdict = b.registry.is_refused(claims)
    if isinstance(verdict, Awaitable):
        verdict = await verdict
    await hold.reached()
    return bool(verdict)


async def test_forged_messages_do_not_leave_the_bus_cursor_ahead_of_the_store(
    make_app_node: AppNodeFactory, sqlite_url: str, redis_url: str, channel: str
) -> None:
    app_a, app_b = make_app(), make_app()
    JWTManager(app_a)
    JWTManager(app_b)
    a = await make_app_node(app_a, store_url=sqlite_url, **ALLOWLIST)
    gated = GatedStore.from_url(sqlite_url)
    b = await make_app_node(app_b, store=gated, **ALLOWLIST)

    # Control: without forgeries, B waits for the late registration and accepts.
    assert await first_request_on_b(app_a, a, b, gated) is False

    head = await b.store.head()
    await eventually(lambda: b.replica.store_seq >= head or b.replica.bus_seq >= head)
    client = aredis.Redis.from_url(redis_url)
    try:
        now = time.time()
        pipe = client.pipeline(transaction=False)
        for n in range(1, FORGED + 1):
            event = RevocationEvent(
                Op.REVOKE, head + n, uuid.uuid4().hex, now + 600, None, None, "mallory", now
            )
            pipe.publish(channel, encode_event(event, None))
        await pipe.execute()
    finally:
        await client.aclose()
    await eventually(lambda: b.replica.overlay_count == FORGED)
    # B's catch-ups shed every forged restriction ...
    for _ in range(2):
        done = b.stats.resyncs
        b.subscriber.request_catch_up()
        await eventually(lambda d=done: b.stats.resyncs > d)
    assert b.replica.overlay_count == 0
    assert b.stats.rejected["unconfirmed"] == FORGED
    store_head = await b.store.head()
    status = b.status()

    # ... and a user logging in now is refused on B at the first request.
    refused = await first_request_on_b(app_a, a, b, gated)
    honest = status["last_applied_seq"] <= store_head and not refused
    assert honest, (
        f"after its catch-ups shed all {FORGED} forgeries, B still reports "
        f"last_applied_seq={status['last_applied_seq']} with the store at head "
        f"{store_head}, and refused a token issued on A a moment before (first request "
        f"after login, registration read 0.3 s late, REVSYNC_ALLOWLIST_WAIT=1s): "
        f"refused={refused}"
    )
