"""Attack 6 (operator's false alarm): a node that writes while it catches up takes its
own fresh write for a store that went back in time, and re-reads the whole store.

docs/design.md, "When the store goes back in time": the node re-reads everything when
"the head is below the node's cursor (writes were lost ...)" and logs
``revsync.store_history_lost`` at error level.  The brief asks for no false alarms
("a node re-reading the whole store when nothing was lost").

``Replica.catch_up`` reads the store's position, and only when that answer has come
back computes what it has "seen" (``_lost_history``: ``store_seq``, the node's own
writes in ``_ahead`` and ``_newest``).  A local write that commits after the position
was read but is applied (``apply_local``) before the answer is handled makes
``seen = head + 1`` and the node concludes "store head N is below seq N+1, which this
node has read": it logs an error, counts a store reset and re-reads the entire store
under its lock (blocking every local write meanwhile) -- though nothing was lost.

Without any injected delay this happens on its own under load: one node, four
concurrent revokers and catch-ups every tick produced, in 8 s, 1 false reset on
SQLite, 5 on PostgreSQL and 14 on the Redis store (see the report).  To make it
deterministic here, the position's answer is handed back 20 ms late (a delegating
wrapper around the real store: a slow network reply), while the node revokes tokens
back to back.

Root cause: revsync/_replica.py ``Replica._lost_history`` (compares a position read
before the node's latest local writes with what those writes told it).  Severity:
false alarm only (an error log, a reset counter, a full re-read per occurrence, which
at a million rows holds the replica lock for seconds).  Failed before the fix; kept as a regression
test.
"""

from __future__ import annotations

import asyncio
import time

from revsync.stores.base import StorePosition
from tests.engine.conftest import NodeFactory, claims
from tests.regressions.conftest import GatedStore

RESYNC = 0.05
DURATION = 3.0


class LatePosition(GatedStore):
    """The real store; the answer of ``position()`` reaches the caller 20 ms late."""

    async def position(self) -> StorePosition:
        position: StorePosition = await self.real.position()
        await asyncio.sleep(0.02)
        return position


async def test_local_writes_during_catch_ups_are_not_taken_for_lost_history(
    make_node: NodeFactory, store_url: str
) -> None:
    node = await make_node(
        store_url, store=LatePosition.from_url(store_url), resync_interval=RESYNC
    )
    writes = 0
    started = time.monotonic()

    async def revoker() -> None:
        nonlocal writes
        while time.monotonic() - started < DURATION:
            await node.revoke(claims())
            writes += 1

    await asyncio.gather(revoker(), revoker())
    assert node.stats.store_resets == 0, (
        f"nothing was lost, yet the node re-read the whole store "
        f"{node.stats.store_resets} times ({writes} local writes, "
        f"{node.stats.resyncs} catch-ups)"
    )
