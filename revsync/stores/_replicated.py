"""Redis store writes that return only once replicas hold them (``min_replicas``).

``WAIT n timeout`` counts the replicas that acknowledged the writes *of the
connection it runs on*, so it must follow the write script on that same connection
(on another one it would count replicas that hold nothing of ours, and return at
once).  One server or a Sentinel master gets both in one pipeline.  In a Cluster, a
ClusterPipeline sends the commands meant for one node down one connection, in order:
the script goes to the primary of the store's ``{prefix}`` slot, and WAIT is sent to
that same node.  docs/scale.md, "Redis as the store across a failover".
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

__all__ = ["write_and_wait"]


async def write_and_wait(
    client: aioredis.Redis | RedisCluster,
    script: AsyncScript,
    keys: list[str],
    args: list[Any],
    wait: tuple[int, int],
) -> tuple[Any, int]:
    """Run ``script``, then ``WAIT replicas timeout_ms`` (``wait``) on the same
    connection; return the script's result and how many replicas acknowledged it."""
    if isinstance(client, RedisCluster):
        return await _on_shard(client, script, keys, args, wait)
    pipe = client.pipeline(transaction=False)
    await script(keys=keys, args=args, client=pipe)
    pipe.execute_command("WAIT", *wait)
    doc, acked = await pipe.execute()
    return doc, int(acked)


async def _on_shard(
    client: RedisCluster,
    script: AsyncScript,
    keys: list[str],
    args: list[Any],
    wait: tuple[int, int],
) -> tuple[Any, int]:
    await client.initialize()  # a no-op unless a failure below made it forget the slots
    for attempt in range(2):
        pipe = client.pipeline()
        # redis-py refuses pipe.evalsha() in a Cluster; the raw command is routed by key.
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", *wait, target_nodes=client.get_node_from_key(keys[0]))
        try:
            # No redirections: a MOVED script would be re-sent alone, away from WAIT.
            doc, acked = await pipe.execute(allow_redirections=False)
        except NoScriptError:
            # A promoted replica never loaded the scripts (a script's effects replicate,
            # not its text).  Nothing ran: load them and send once more.
            if attempt:
                raise
            await client.script_load(script.script)
            continue
        except Exception:
            # A dead primary or a moved slot: make the client look the cluster up
            # again (what redis-py does after a failed command), or every later
            # write would go on asking the old owner.
            await client.aclose()
            raise
        return doc, int(acked)
    raise AssertionError  # pragma: no cover - the loop returns or raises
