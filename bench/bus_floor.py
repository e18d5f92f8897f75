"""The bus's floor: a process that does nothing but read the channel.

``python -m bench.bus_floor REDIS_URL CHANNEL OUT``: subscribes with redis-py's
blocking client (no event loop, no requests, no revsync), writes ``OUT.ready`` once
subscribed, and records for every revoke message its receipt time minus the
publisher's ``ts``.  On SIGTERM it writes those lags (seconds) to ``OUT`` as JSON.

Run beside the api nodes, it shows what any subscriber could achieve on this machine
at that moment: the publisher's send, Redis, and the operating system waking a
process, with none of a node's own work.  The gap between it and a node's figure is
the node's; the floor itself is the machine's.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import redis


def main(url: str, channel: str, out: Path) -> None:
    lags: list[float] = []

    def write(_signum: int, _frame: FrameType | None) -> None:
        out.write_text(json.dumps(lags))
        sys.exit(0)

    signal.signal(signal.SIGTERM, write)
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    while True:
        message = pubsub.get_message(timeout=1.0)
        if message is None:
            continue
        if message["type"] == "subscribe":
            out.with_suffix(".ready").touch()
            continue
        received = time.time()
        try:
            fields = json.loads(message["data"])
        except ValueError:
            continue
        if isinstance(fields, dict) and fields.get("op") == "revoke":
            lags.append(received - float(fields["ts"]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
