"""The Redis store on Sentinel leaves no connection open once closed: neither to the
master nor to the sentinels that told it where the master is (redis-py's master
client does not own those; a node stopped and started again would leak them each
time, as the bus did before the issue-15 attack round)."""

from __future__ import annotations

import asyncio
import uuid

from revsync.changes import ChangeRequest, Kind
from revsync.stores import store_from_url
from tests.attacks15.sockets import connections_to
from tests.scale.conftest import SentinelSetup


async def test_a_closed_sentinel_store_holds_no_connection(sentinel_setup: SentinelSetup) -> None:
    setup = sentinel_setup
    sentinels = [s.port for s in setup.sentinels]
    url = setup.url(f"?prefix=leak-{uuid.uuid4().hex[:6]}")
    for round_ in range(3):  # a node stopped and started again, three times
        store = store_from_url(url)
        await store.connect()
        await store.write(ChangeRequest(Kind.JTI, f"j{round_}", True, 4_000_000_000.0))
        assert await store.head() == round_ + 1
        assert connections_to(sentinels) > 0  # it did ask the sentinels
        await store.close()
        await asyncio.sleep(0.05)
        assert connections_to(sentinels) == 0, f"round {round_}"
        assert connections_to([setup.master.port]) == 0, f"round {round_}"
