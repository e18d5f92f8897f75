"""Issue 5, item 5: a model-based test of the whole engine with hypothesis.

A ``RuleBasedStateMachine`` drives two in-process nodes (real Redis of the test's own,
real SQLite file) and a writer that stands for every other node: it writes to the
store and then delivers the change's event on the bus, drops it, or holds it back to
publish later out of order.  Other rules revoke through a node, revoke and unrevoke
identities, restart a node, kill and restart Redis, let real time pass, and advance
a controllable clock past token expiries (pruning the store and the nodes' sets as the
resync job and the ticker would at that time).

The invariant, checked after every step: a node accepts a live token only if the
store says it is not revoked, or it became revoked less than the maximum staleness
ago.  At the end of each example every node's set must agree with the store.

Bounded: 50 examples.  REVSYNC_LONG_TESTS=1: 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from typing import Any

import redis.asyncio as aredis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from revsync import RevSync
from revsync.changes import ChangeRequest, Kind
from revsync.events import RevocationEvent, encode_event
from revsync.stores import store_from_url
from tests.conftest import RedisServer
from tests.engine.conftest import make_app

from .conftest import sized

MAX_STALENESS = 1.0
SLACK = 0.25  # scheduling on a loaded 2-core machine
IDENTITIES = ("alice", "bob", "carol")
DELIVERY = st.sampled_from(["publish", "publish", "drop", "hold", "duplicate"])


def build_machine(redis_server: RedisServer, store_url: str, report: dict[str, Any]) -> type:
    class Revocations(RuleBasedStateMachine):
        tokens = Bundle("tokens")

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.channel = f"model-{uuid.uuid4().hex[:10]}"
            self.store = store_from_url(store_url)
            self.run(self.store.connect())
            self.bus = aredis.Redis.from_url(redis_server.url)
            self.clock = time.time()
            self.claims: list[dict[str, Any]] = []
            self.held: list[bytes] = []
            self.revoked_since: dict[str, float] = {}
            self.nodes: list[RevSync] = []
            self.steps = 0
            self.restarts = 0  # at most two per example, so most steps test the bus

        # -- plumbing ---------------------------------------------------------------

        def run(self, coro: Any) -> Any:
            # Bounded: a step that hangs fails with its traceback instead of stalling CI.
            return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

        def new_node(self) -> RevSync:
            node = RevSync(
                make_app(),
                store_url=store_url,
                redis_url=redis_server.url,
                channel=self.channel,
                heartbeat_interval=0.1,
                max_staleness=MAX_STALENESS,
                resync_interval=0.3,
                startup_timeout=10,
                subject_ttl=7200,
            )
            self.run(node.start())
            return node

        async def _write(self, request: ChangeRequest, delivery: str) -> None:
            change = await self.store.write(request)
            data = encode_event(RevocationEvent.from_change(change, "model", time.time()), None)
            if delivery == "hold":
                self.held.append(data)
            elif delivery != "drop":
                for _ in range(2 if delivery == "duplicate" else 1):
                    await self._publish(data)

        async def _publish(self, data: bytes) -> None:
            # Redis down: the message is lost, as it would be in production.
            with contextlib.suppress(OSError, aredis.RedisError):
                await self.bus.publish(self.channel, data)

        def truth(self, claims: dict[str, Any]) -> bool:
            """Whether the store says this token is revoked."""

            async def read() -> bool:
                row = await self.store.get(Kind.JTI, claims["jti"])
                if row is not None and row.revoked:
                    return True
                subject = await self.store.get(Kind.SUBJECT, claims["identity"])
                return bool(
                    subject is not None
                    and subject.revoked
                    and subject.cutoff is not None
                    and claims["iat"] <= subject.cutoff
                )

            return bool(self.run(read()))

        def live(self) -> list[dict[str, Any]]:
            return [c for c in self.claims if c["exp"] > self.clock + 1]

        # -- rules ------------------------------------------------------------------

        @initialize()
        def start_nodes(self) -> None:
            self.nodes = [self.new_node(), self.new_node()]

        @rule(target=tokens, identity=st.sampled_from(IDENTITIES), age=st.integers(0, 120))
        def new_token(self, identity: str, age: int) -> int:
            now = time.time()
            self.claims.append(
                {
                    "jti": str(uuid.uuid4()),
                    "identity": identity,
                    "iat": int(now) - age,
                    "exp": int(now) + random.choice((60, 600, 3600)),
                    "type": "access",
                }
            )
            return len(self.claims) - 1

        @rule(token=tokens, delivery=DELIVERY)
        def revoke(self, token: int, delivery: str) -> None:
            c = self.claims[token]
            request = ChangeRequest(Kind.JTI, c["jti"], True, float(c["exp"]), c["identity"])
            self.run(self._write(request, delivery))

        @rule(token=tokens, delivery=DELIVERY)
        def unrevoke(self, token: int, delivery: str) -> None:
            c = self.claims[token]
            request = ChangeRequest(Kind.JTI, c["jti"], False, float(c["exp"]), c["identity"])
            self.run(self._write(request, delivery))

        @rule(token=tokens)
        def lost_revocation_then_wait_past_the_window(self, token: int) -> None:
            """The message of a revocation is lost and nothing else happens for longer
            than the staleness window: only the resync timer can repair that."""
            c = self.claims[token]
            request = ChangeRequest(Kind.JTI, c["jti"], True, float(c["exp"]), c["identity"])
            self.run(self._write(request, "drop"))
            self.revoked_since.setdefault(c["jti"], time.monotonic())
            self.run(asyncio.sleep(MAX_STALENESS + SLACK + 0.1))

        @rule(token=tokens, which=st.integers(0, 1))
        def revoke_through_a_node(self, token: int, which: int) -> None:
            self.run(self.nodes[which].revoke(self.claims[token]))

        @rule(identity=st.sampled_from(IDENTITIES), delivery=DELIVERY)
        def revoke_subject(self, identity: str, delivery: str) -> None:
            now = time.time()
            request = ChangeRequest(Kind.SUBJECT, identity, True, now + 7200, identity, now)
            self.run(self._write(request, delivery))

        @rule(identity=st.sampled_from(IDENTITIES), delivery=DELIVERY)
        def unrevoke_subject(self, identity: str, delivery: str) -> None:
            request = ChangeRequest(Kind.SUBJECT, identity, False, time.time(), identity)
            self.run(self._write(request, delivery))

        @rule(order=st.sampled_from(["reversed", "shuffled"]))
        def release_held_messages(self, order: str) -> None:
            held, self.held = self.held, []
            if order == "reversed":
                held.reverse()
            else:
                random.shuffle(held)
            for data in held:
                self.run(self._publish(data))

        @precondition(lambda self: self.restarts < 2)
        @rule(which=st.integers(0, 1))
        def restart_node(self, which: int) -> None:
            self.run(self.nodes[which].stop())
            self.nodes[which] = self.new_node()
            self.restarts += 1
            report["node_restarts"] += 1

        @precondition(lambda self: self.restarts < 2)
        @rule()
        def restart_redis(self) -> None:
            redis_server.kill()
            self.run(asyncio.sleep(0.05))
            redis_server.start()
            self.restarts += 1
            report["redis_restarts"] += 1

        @rule(seconds=st.sampled_from([0.0, 0.2, 1.4]))
        def let_time_pass(self, seconds: float) -> None:
            self.run(asyncio.sleep(seconds))

        @rule(seconds=st.sampled_from([30, 300, 1800, 4000]))
        def advance_clock(self, seconds: int) -> None:
            """Tokens expire: prune the store and every set at the new time."""
            self.clock += seconds

            async def prune() -> None:
                await self.store.prune(self.clock)
                for node in self.nodes:
                    async with node.replica.lock:
                        node.revocations.prune(self.clock)

            self.run(prune())

        # -- the invariant ----------------------------------------------------------

        @invariant()
        def no_node_accepts_a_token_revoked_longer_than_the_staleness_window(self) -> None:
            if not self.nodes:
                return
            self.run(asyncio.sleep(0.005))  # let the nodes digest what just happened
            now = time.monotonic()
            self.steps += 1
            for c in self.live():
                if self.truth(c):
                    since = self.revoked_since.setdefault(c["jti"], now)
                    for n, node in enumerate(self.nodes):
                        report["decisions"] += 1
                        if now - since > MAX_STALENESS + SLACK:
                            report["decisions_past_the_window"] += 1
                        if not node.is_revoked(c):
                            report["accepted_inside_window"] += 1
                            assert now - since <= MAX_STALENESS + SLACK, (
                                f"node {n} accepts {c} revoked {now - since:.2f}s ago"
                            )
                else:
                    self.revoked_since.pop(c["jti"], None)

        def teardown(self) -> None:
            try:
                if self.nodes:
                    self.run(self._settle())
            finally:
                for node in self.nodes:
                    self.run(node.stop())
                self.run(self.store.close())
                self.run(self.bus.aclose())
                self.loop.close()
                asyncio.set_event_loop(None)
                report["examples"] += 1
                report["steps"] += self.steps

        async def _settle(self) -> None:
            """Every node's set ends equal to the store (invariant 6: last one wins)."""
            self.held.clear()
            deadline = time.monotonic() + MAX_STALENESS + 2
            while True:
                wrong = []
                for c in self.live():
                    truth = self.truth_now(await self._rows(c), c)
                    for n, node in enumerate(self.nodes):
                        got = node.revocations.is_revoked(c["jti"], c["identity"], c["iat"])
                        if got != truth:
                            wrong.append((n, c["jti"], got, truth))
                if not wrong:
                    return
                assert time.monotonic() < deadline, f"nodes never agreed with the store: {wrong}"
                await asyncio.sleep(0.02)

        async def _rows(self, c: dict[str, Any]) -> tuple[Any, Any]:
            return (
                await self.store.get(Kind.JTI, c["jti"]),
                await self.store.get(Kind.SUBJECT, c["identity"]),
            )

        @staticmethod
        def truth_now(rows: tuple[Any, Any], c: dict[str, Any]) -> bool:
            row, subject = rows
            if row is not None and row.revoked:
                return True
            return bool(
                subject is not None
                and subject.revoked
                and subject.cutoff is not None
                and c["iat"] <= subject.cutoff
            )

    return Revocations


def test_model_no_node_accepts_a_token_revoked_in_the_store(
    redis_server: RedisServer, sqlite_url: str, figures: dict[str, Any]
) -> None:
    report = dict.fromkeys(
        (
            "examples",
            "steps",
            "decisions",
            "decisions_past_the_window",
            "accepted_inside_window",
            "node_restarts",
        ),
        0,
    )
    report["redis_restarts"] = 0
    machine = build_machine(redis_server, sqlite_url, report)
    examples = sized(50, 500)
    started = time.monotonic()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=sized(10, 25),
            deadline=None,
            database=None,
            # No shrinking: each example runs for seconds; the failing steps are printed.
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert report["examples"] >= examples
    figures.update(
        report,
        max_staleness_s=MAX_STALENESS,
        violations=0,
        seconds=round(time.monotonic() - started, 1),
    )
