"""The state model under every interleaving: a hypothesis state machine over real nodes.

Three in-process nodes (each a Quart app with its own RevSync, its own SQLite
connections and its own Redis subscription) share one real SQLite file and one
private redis-server.  A writer stands for every other node: it writes to the store
and then delivers the change's event on the bus, drops it, duplicates it, or holds it
back to publish later out of order.  Other rules:

- a node revokes or unrevokes through its own API while its store call returns late
  (the write commits, its return waits until a later step releases it);
- a node's store reads (doorbells, anchors, catch-up pages) are slowed, so doorbells
  race catch-ups and local writes;
- a forger publishes messages with arbitrary seq, exp and cut-off: unsigned, or signed
  with the nodes' key (a stolen key), sometimes a valid unsigned one when no key is set;
- the store goes back in time: a backup is taken, later restored into the live file
  with the sqlite3 backup API while the nodes run, and new writes reuse the numbers;
- a node restarts, Redis restarts, real time passes.

Checked after every step:

1. safety: a node that has read the store past a revocation refuses the token (unless
   a restore happened since the node last caught up twice);
2. no message lowers a restriction: a token the store says is revoked and a node
   refused before a bus message is still refused after it;
3. liveness: a token revoked in the store is refused by every node within the maximum
   staleness plus slack;

and at the end of each example, after releasing everything and letting the nodes
settle, every node equals the store: the same decisions for every token and the same
revoked jtis and cut-offs, so forged restrictions were shed.

Bounded: 30 examples of up to 20 steps.  REVSYNC_LONG_TESTS=1: 300 examples of 40.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aredis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from revsync import RevSync
from revsync.changes import Change, ChangeRequest, Kind
from revsync.events import Op, RevocationEvent, encode_event
from revsync.stores.sqlite import SqliteStore
from tests.conftest import RedisServer, copy_sqlite
from tests.engine.conftest import make_app

from .conftest import sized

NODES = 3
MAX_STALENESS = 1.0
RESYNC = 0.3
SLACK = 0.5  # scheduling on a loaded 2-core machine
KEY = b"model-key-" + b"k" * 22
IDENTITIES = ("alice", "bob", "carol")
DELIVERY = st.sampled_from(["publish", "publish", "drop", "hold", "duplicate"])
FAR = 10**15


class SlowStore:
    """A node's real SqliteStore with two faults a test can switch on: writes whose
    return waits (after the commit) for ``release``, and reads that take longer."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.hold_writes = False
        self.release = asyncio.Event()
        self.read_delay = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def write(self, request: ChangeRequest) -> Change:
        hold = self.hold_writes
        change = await self._store.write(request)
        if hold:
            await self.release.wait()
        return change

    async def get(self, kind: Kind, key: str) -> Change | None:
        if self.read_delay:
            await asyncio.sleep(random.uniform(0, self.read_delay))
        return await self._store.get(kind, key)

    async def since(self, seq: int, limit: int = 10_000) -> list[Change]:
        if self.read_delay:
            await asyncio.sleep(random.uniform(0, self.read_delay))
        return await self._store.since(seq, limit)


def build_machine(
    redis_server: RedisServer, path: Path, report: dict[str, Any]
) -> type[RuleBasedStateMachine]:
    class Revocations(RuleBasedStateMachine):
        tokens = Bundle("tokens")

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.channel = f"model-{uuid.uuid4().hex[:10]}"
            self.db = path / f"model-{uuid.uuid4().hex[:8]}.db"
            self.backup = self.db.with_suffix(".backup")
            self.has_backup = False
            self.store = SqliteStore(self.db)
            self.run(self.store.connect())
            self.bus = aredis.Redis.from_url(redis_server.url)
            self.clock = time.time()
            self.claims: list[dict[str, Any]] = []
            self.held: list[bytes] = []
            self.revoked_since: dict[str, float] = {}
            self.nodes: list[RevSync] = []
            self.slow: list[SlowStore] = []
            self.pending: list[asyncio.Task[Any]] = []
            self.key: bytes | None = None
            self.node_restarts = self.redis_restarts = self.restores = 0
            self.resyncs_at_restore: list[int] | None = None

        # -- plumbing ---------------------------------------------------------------

        def run(self, coro: Any) -> Any:
            # Bounded: a step that hangs fails with its traceback instead of stalling CI.
            return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

        def new_node(self) -> tuple[RevSync, SlowStore]:
            slow = SlowStore(SqliteStore(self.db))
            node = RevSync(
                make_app(),
                store=slow,  # type: ignore[arg-type]  # the real store, delegated
                redis_url=redis_server.url,
                channel=self.channel,
                event_key=self.key,
                heartbeat_interval=0.1,
                max_staleness=MAX_STALENESS,
                resync_interval=RESYNC,
                startup_timeout=10,
                cutoff_ttl=7200,
            )
            self.run(node.start())
            return node, slow

        async def _write(self, request: ChangeRequest, delivery: str) -> None:
            change = await self.store.write(request)
            event = RevocationEvent.from_change(change, "writer", time.time())
            data = encode_event(event, self.key)
            if delivery == "hold":
                self.held.append(data)
            elif delivery != "drop":
                for _ in range(2 if delivery == "duplicate" else 1):
                    await self._publish(data)

        async def _publish(self, data: bytes) -> None:
            # Redis down: the message is lost, as it would be in production.
            with contextlib.suppress(OSError, aredis.RedisError):
                await self.bus.publish(self.channel, data)

        async def _truth(self, c: dict[str, Any]) -> tuple[bool, int]:
            """Whether the store says this token is revoked, and by which seq."""
            row = await self.store.get(Kind.JTI, c["jti"])
            if row is not None and row.revoked:
                return True, row.seq
            cut = await self.store.get(Kind.IDENTITY, c["identity"])
            if (
                cut is not None
                and cut.revoked
                and cut.cutoff is not None
                and c["iat"] <= cut.cutoff
            ):
                return True, cut.seq
            return False, 0

        def live(self) -> list[dict[str, Any]]:
            return [c for c in self.claims if c["exp"] > self.clock + 5]

        def decisions(self) -> dict[tuple[int, str], bool]:
            return {
                (n, c["jti"]): node.is_revoked(c)
                for n, node in enumerate(self.nodes)
                for c in self.live()
            }

        def settle(self, seconds: float = 0.02) -> None:
            self.run(asyncio.sleep(seconds))

        # -- set-up -----------------------------------------------------------------

        @initialize(target=tokens, signed=st.booleans())
        def start_nodes(self, signed: bool) -> Any:
            self.key = KEY if signed else None
            for _ in range(NODES):
                node, slow = self.new_node()
                self.nodes.append(node)
                self.slow.append(slow)
            report["signed_examples" if signed else "unsigned_examples"] += 1
            # Two tokens per identity to start with, and the store's empty state saved:
            # every rule has something to work on from the first step.
            now = time.time()
            for n, identity in enumerate(IDENTITIES * 2):
                self.claims.append(_claims(identity, now - 60 * n))
            copy_sqlite(self.db, self.backup)
            self.has_backup = True
            return multiple(*range(len(self.claims)))

        # -- the writer: every other node -----------------------------------------------

        @rule(target=tokens, identity=st.sampled_from(IDENTITIES), age=st.integers(0, 120))
        def new_token(self, identity: str, age: int) -> int:
            self.claims.append(_claims(identity, time.time() - age))
            return len(self.claims) - 1

        @rule(token=tokens, revoked=st.booleans(), delivery=DELIVERY)
        def write(self, token: int, revoked: bool, delivery: str) -> None:
            c = self.claims[token]
            request = ChangeRequest(Kind.JTI, c["jti"], revoked, float(c["exp"]), c["identity"])
            self.run(self._write(request, delivery))

        @rule(identity=st.sampled_from(IDENTITIES), revoked=st.booleans(), delivery=DELIVERY)
        def write_identity(self, identity: str, revoked: bool, delivery: str) -> None:
            now = time.time()
            cutoff = now if revoked else None
            request = ChangeRequest(Kind.IDENTITY, identity, revoked, now + 7200, identity, cutoff)
            self.run(self._write(request, delivery))

        @rule(order=st.sampled_from(["reversed", "shuffled", "twice"]))
        def release_held_messages(self, order: str) -> None:
            held, self.held = self.held, []
            if order == "reversed":
                held.reverse()
            elif order == "shuffled":
                random.shuffle(held)
            else:
                held = held + held
            self.guarded(lambda: [self.run(self._publish(d)) for d in held])

        # -- the nodes themselves -----------------------------------------------------

        @rule(token=tokens, which=st.integers(0, NODES - 1), revoked=st.booleans())
        def local_write_returns_late(self, token: int, which: int, revoked: bool) -> None:
            """The node writes; the store commits; its answer comes back only later."""
            node, slow, c = self.nodes[which], self.slow[which], self.claims[token]
            slow.hold_writes = True
            call = node.revoke(c) if revoked else node.unrevoke(c["jti"])
            self.pending.append(self.loop.create_task(call))
            self.settle(0.05)  # long enough for the commit to happen
            slow.hold_writes = False
            report["late_local_writes"] += 1

        @rule(which=st.integers(0, NODES - 1))
        def release_late_writes(self, which: int) -> None:
            slow = self.slow[which]
            slow.release.set()
            slow.release = asyncio.Event()
            self.settle()

        @rule(token=tokens, which=st.integers(0, NODES - 1))
        def local_revoke(self, token: int, which: int) -> None:
            self.run(self.nodes[which].revoke(self.claims[token]))
            assert self.nodes[which].is_revoked(self.claims[token]), "own revoke not applied"

        @rule(which=st.integers(0, NODES - 1), delay=st.sampled_from([0.0, 0.05, 0.3]))
        def slow_store_reads(self, which: int, delay: float) -> None:
            self.slow[which].read_delay = delay

        # -- the forger -------------------------------------------------------------------

        @rule(
            data=st.data(),
            op=st.sampled_from([Op.REVOKE, Op.REVOKE_IDENTITY, Op.UNREVOKE, Op.UNREVOKE_IDENTITY]),
            where=st.sampled_from(["next", "below", "far", "head"]),
            exp=st.sampled_from(["soon", "late"]),
            signed=st.booleans(),
        )
        def forge(self, data: Any, op: Op, where: str, exp: str, signed: bool) -> None:
            head = self.run(self.store.head())
            seq = {"next": head + 1, "below": max(head - 1, 1), "far": FAR, "head": max(head, 1)}
            now = time.time()
            if op in (Op.REVOKE_IDENTITY, Op.UNREVOKE_IDENTITY):
                key = data.draw(st.sampled_from(IDENTITIES))
                cutoff: float | None = data.draw(st.sampled_from([1.0, now - 60]))
            else:
                key = (
                    self.claims[data.draw(st.integers(0, len(self.claims) - 1))]["jti"]
                    if (self.claims and data.draw(st.booleans()))
                    else str(uuid.uuid4())
                )
                cutoff = None
            event = RevocationEvent(
                op=op,
                seq=seq[where],
                key=key,
                expires_at=now + 1 if exp == "soon" else now + 7200,
                identity=key if cutoff is not None else None,
                cutoff=cutoff,
                origin="mallory",
                sent_at=now,
            )
            data_bytes = encode_event(event, KEY if signed else None)
            self.guarded(lambda: self.run(self._publish(data_bytes)))
            report["forged"] += 1

        def guarded(self, deliver: Any) -> None:
            """Deliver bus messages; no token the store says is revoked may be let in."""
            self.settle()
            truth = {c["jti"]: self.run(self._truth(c))[0] for c in self.live()}
            before = self.decisions()
            deliver()
            self.settle(0.1)
            after = self.decisions()
            for (n, jti), refused in before.items():
                if refused and truth[jti] and not after[(n, jti)]:
                    msg = f"a bus message let node {n} accept {jti}, revoked in the store"
                    raise AssertionError(msg)

        # -- the store going back in time ---------------------------------------------------

        @rule()
        def take_backup(self) -> None:
            copy_sqlite(self.db, self.backup)
            self.has_backup = True

        @precondition(lambda self: self.has_backup and self.restores < 2)
        @rule(writes=st.integers(0, 4))
        def restore_backup(self, writes: int) -> None:
            """Restore the backup into the live file, then write anew over lost numbers."""
            copy_sqlite(self.backup, self.db)
            self.resyncs_at_restore = [node.stats.resyncs for node in self.nodes]
            self.restores += 1
            report["restores"] += 1
            for _ in range(writes):
                c = self.claims[random.randrange(len(self.claims))] if self.claims else None
                if c is not None:
                    request = ChangeRequest(
                        Kind.JTI, c["jti"], True, float(c["exp"]), c["identity"]
                    )
                    self.run(self._write(request, "publish"))

        # -- processes -----------------------------------------------------------------------

        @precondition(lambda self: self.node_restarts < 1)
        @rule(which=st.integers(0, NODES - 1))
        def restart_node(self, which: int) -> None:
            self.slow[which].release.set()
            self.run(self.nodes[which].stop())
            self.nodes[which], self.slow[which] = self.new_node()
            if self.resyncs_at_restore is not None:
                self.resyncs_at_restore[which] = 0
            self.node_restarts += 1
            report["node_restarts"] += 1

        @precondition(lambda self: self.redis_restarts < 1)
        @rule()
        def restart_redis(self) -> None:
            redis_server.kill()
            self.settle(0.05)
            redis_server.start()
            self.redis_restarts += 1
            report["redis_restarts"] += 1

        @rule(seconds=st.sampled_from([0.0, 0.2, 0.6, 1.6]))
        def let_time_pass(self, seconds: float) -> None:
            self.settle(seconds)

        # -- the invariants -------------------------------------------------------------------

        def caught_up_since_restore(self, n: int) -> bool:
            if self.resyncs_at_restore is None:
                return True
            return self.nodes[n].stats.resyncs >= self.resyncs_at_restore[n] + 2

        @invariant()
        def no_node_that_read_a_revocation_accepts_its_token(self) -> None:
            if not self.nodes:
                return
            self.settle(0.005)
            now = time.monotonic()
            truths = {c["jti"]: self.run(self._truth(c)) for c in self.live()}
            for c in self.live():
                revoked, seq = truths[c["jti"]]
                if not revoked:
                    self.revoked_since.pop(c["jti"], None)
                    continue
                since = self.revoked_since.setdefault(c["jti"], now)
                for n, node in enumerate(self.nodes):
                    report["decisions"] += 1
                    accepted = not node.is_revoked(c)
                    if node.replica.store_seq >= seq and self.caught_up_since_restore(n):
                        report["decisions_after_sync"] += 1
                        assert not accepted, (
                            f"node {n} read the store to seq {node.replica.store_seq} and "
                            f"accepts {c['jti']}, revoked at seq {seq}"
                        )
                    if accepted:
                        report["accepted_inside_window"] += 1
                        assert now - since <= MAX_STALENESS + RESYNC + SLACK, (
                            f"node {n} accepts {c} revoked {now - since:.2f}s ago"
                        )

        def teardown(self) -> None:
            try:
                if self.nodes:
                    self.run(self._quiesce())
            finally:
                for slow in self.slow:
                    slow.release.set()
                for task in self.pending:
                    with contextlib.suppress(Exception):
                        self.run(asyncio.gather(task, return_exceptions=True))
                for node in self.nodes:
                    self.run(node.stop())
                self.run(self.store.close())
                self.run(self.bus.aclose())
                self.loop.close()
                asyncio.set_event_loop(None)
                report["examples"] += 1

        async def _quiesce(self) -> None:
            """Release everything; then every node must equal the store."""
            self.held.clear()
            for slow in self.slow:
                slow.read_delay = 0.0
                slow.release.set()
            await asyncio.gather(*self.pending, return_exceptions=True)
            marks = [node.stats.resyncs for node in self.nodes]
            deadline = time.monotonic() + MAX_STALENESS + 10
            while True:
                wrong = await self._differences(marks)
                if not wrong:
                    return
                assert time.monotonic() < deadline, f"nodes never agreed with the store: {wrong}"
                await asyncio.sleep(0.05)

        async def _differences(self, marks: list[int]) -> list[Any]:
            wrong: list[Any] = []
            for n, node in enumerate(self.nodes):
                if node.stats.resyncs < marks[n] + 2:
                    wrong.append((n, "not caught up twice yet"))
            revoked_jtis, identities = await _store_state(self.store, self.clock)
            for n, node in enumerate(self.nodes):
                if not node.status()["ready"]:
                    wrong.append((n, "not ready"))
                held_jtis = set(node.revocations.snapshot_jtis())
                if held_jtis != revoked_jtis:
                    for jti in held_jtis ^ revoked_jtis:
                        target = (Kind.JTI, jti)
                        wrong.append(
                            (
                                n,
                                "jti",
                                jti,
                                await self.store.get(Kind.JTI, jti),
                                node.replica._ahead.get(target),
                                node.replica._overlays.get(target),
                                node.replica.store_seq,
                                node.replica.history._frontier,
                                node.replica.history.position,
                                [(a.seq, a.key[:8]) for a in node.replica.history._anchors],
                                node.replica.resets,
                                await self.store.position(),
                            )
                        )
                held_identities = {
                    k: v[0] for k, v in node.revocations.snapshot_identities().items()
                }
                if held_identities != identities:
                    wrong.append((n, "identities", held_identities, identities))
                for c in self.live():
                    truth = (await self._truth(c))[0]
                    if node.is_revoked(c) != truth:
                        wrong.append((n, c["jti"], not truth, truth))
            return wrong

    return Revocations


def _claims(identity: str, issued_at: float) -> dict[str, Any]:
    return {
        "jti": str(uuid.uuid4()),
        "identity": identity,
        "iat": int(issued_at),
        "exp": int(time.time()) + random.choice((600, 3600)),
        "type": "access",
    }


async def _store_state(store: SqliteStore, now: float) -> tuple[set[str], dict[str, float]]:
    """The store's live revoked jtis and cut-offs."""
    jtis: set[str] = set()
    identities: dict[str, float] = {}
    for row in await store.since(0, 1_000_000):
        if not row.revoked or row.expires_at < now:
            continue
        if row.kind is Kind.JTI:
            jtis.add(row.key)
        elif row.kind is Kind.IDENTITY and row.cutoff is not None:
            identities[row.key] = row.cutoff
    return jtis, identities


def test_model_every_interleaving_keeps_every_node_equal_to_the_store(
    redis_server: RedisServer, tmp_path: Path, figures: dict[str, Any]
) -> None:
    report: dict[str, Any] = dict.fromkeys(
        (
            "examples",
            "signed_examples",
            "unsigned_examples",
            "decisions",
            "decisions_after_sync",
            "accepted_inside_window",
            "late_local_writes",
            "forged",
            "restores",
            "node_restarts",
            "redis_restarts",
        ),
        0,
    )
    machine = build_machine(redis_server, tmp_path, report)
    examples = sized(30, 300)
    started = time.monotonic()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=sized(20, 40),
            deadline=None,
            database=None,
            # No shrinking: each example runs for seconds; the failing steps are printed.
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert report["examples"] >= examples
    assert report["decisions_after_sync"] > 0
    figures.update(
        report,
        max_staleness_s=MAX_STALENESS,
        violations=0,
        seconds=round(time.monotonic() - started, 1),
    )
