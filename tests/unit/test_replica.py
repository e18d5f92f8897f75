"""The replica's state model (docs/design.md): versioned store state, bus messages that
only restrict, overlays confirmed or shed by the next catch-up, doorbells, and a store
that goes back in time.

Each test drives one Replica over a real SQLite file; bus events are built and handed
to ``apply_event`` directly, so every interleaving is chosen by the test.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from revsync import _replica as replica_module
from revsync._replica import PENDING_LIMIT, Replica, Verdict
from revsync._revocation_set import RevocationSet
from revsync._stats import SyncStats
from revsync.changes import Change, ChangeRequest, Kind
from revsync.events import Op, RevocationEvent
from revsync.stores._common import HISTORY_SLOTS
from revsync.stores.sqlite import SqliteStore
from tests.conftest import copy_sqlite

HOUR = 3600.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "revsync.db")
    await store.connect()
    yield store
    await store.close()


@pytest.fixture
async def replica(store: SqliteStore) -> Replica:
    replica = Replica(store, RevocationSet(), SyncStats())
    await replica.catch_up()
    return replica


def revoke(key: str, *, exp: float | None = None) -> ChangeRequest:
    return ChangeRequest(Kind.JTI, key, True, exp or time.time() + HOUR, "alice")


def unrevoke(key: str) -> ChangeRequest:
    return ChangeRequest(Kind.JTI, key, False, time.time() + HOUR, "alice")


def cut(identity: str, cutoff: float) -> ChangeRequest:
    return ChangeRequest(Kind.IDENTITY, identity, True, time.time() + HOUR, identity, cutoff)


def event(change: Change, **fields: Any) -> RevocationEvent:
    """The bus event announcing ``change``, with any field overridden (a forgery)."""
    made = RevocationEvent.from_change(change, "node-x", time.time())
    values = {name: getattr(made, name) for name in made.__slots__}
    values.update(fields)
    return RevocationEvent(**values)


def forged(op: Op, key: str, seq: int, **fields: Any) -> RevocationEvent:
    values: dict[str, Any] = {
        "op": op,
        "seq": seq,
        "key": key,
        "expires_at": time.time() + HOUR,
        "identity": None,
        "cutoff": None,
        "origin": "mallory",
        "sent_at": time.time(),
    }
    values.update(fields)
    return RevocationEvent(**values)


def held(replica: Replica, key: str) -> bool:
    return replica.revocations.contains_jti(key)


# -- store state is versioned ------------------------------------------------------


async def test_a_late_local_write_never_undoes_a_newer_change(
    replica: Replica, store: SqliteStore
) -> None:
    await store.write(revoke("t"))
    stale = await store.write(unrevoke("t"))  # this node's write, returning late
    newer = await store.write(revoke("t"))  # another node's, applied here first
    await replica.apply_event(event(newer))
    await replica.apply_local(stale)
    assert held(replica, "t")
    await replica.catch_up()
    assert held(replica, "t")


async def test_a_catch_up_row_older_than_a_local_write_is_not_applied(
    replica: Replica, store: SqliteStore
) -> None:
    mark = replica.write_mark()
    first = await store.write(revoke("t"))
    second = await store.write(unrevoke("t"))
    await replica.apply_local(second, mark=mark)
    assert not held(replica, "t")
    # The catch-up reads the row in its latest state (seq 2): nothing to undo.
    await replica.catch_up()
    assert not held(replica, "t")
    # An answer arriving after a catch-up read past it changes nothing either.
    await replica.apply_local(first, mark=mark)
    assert not held(replica, "t")
    assert not replica.wants_catch_up
    await replica.catch_up()
    assert replica.stats.store_resets == 0


async def test_a_stale_local_cut_off_change_is_ignored(
    replica: Replica, store: SqliteStore
) -> None:
    now = time.time()
    await store.write(cut("alice", now - 10))
    lifted = await store.write(ChangeRequest(Kind.IDENTITY, "alice", False, now + HOUR, "alice"))
    again = await store.write(cut("alice", now))
    await replica.apply_local(again)
    await replica.apply_local(lifted)
    assert replica.revocations.cutoff("alice") == now


class ReadThenWait:
    """The real store, whose ``get`` reads its row and then waits for ``go``: a doorbell
    read that returns late."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.read = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def get(self, kind: Kind, key: str) -> Change | None:
        row = await self._store.get(kind, key)
        self.read.set()
        await self.go.wait()
        return row


async def test_a_doorbell_read_that_returns_late_never_undoes_a_newer_change(
    store: SqliteStore,
) -> None:
    slow = ReadThenWait(store)
    replica = Replica(slow, RevocationSet(), SyncStats())  # type: ignore[arg-type]
    await replica.catch_up()
    await store.write(revoke("t"))
    lifted = await store.write(unrevoke("t"))
    ring = asyncio.create_task(replica.apply_event(event(lifted)))
    await slow.read.wait()  # it has read "unrevoked, seq 2"
    again = await store.write(revoke("t"))
    await replica.apply_local(again)  # seq 3 lands first
    slow.go.set()
    assert await ring is Verdict.GAP  # confirmed by the store; seq 1 never came by bus
    assert held(replica, "t")
    # A doorbell for a change the node holds already is a duplicate.
    assert await replica.apply_event(event(lifted)) is Verdict.DUPLICATE


async def test_a_doorbell_read_racing_a_catch_up_never_undoes_it(store: SqliteStore) -> None:
    slow = ReadThenWait(store)
    replica = Replica(slow, RevocationSet(), SyncStats())  # type: ignore[arg-type]
    await replica.catch_up()
    await store.write(revoke("t"))
    lifted = await store.write(unrevoke("t"))
    ring = asyncio.create_task(replica.apply_event(event(lifted)))
    await slow.read.wait()
    await store.write(revoke("t"))
    slow.go.set()  # the catch-up's own anchor reads go through at once from now on
    await replica.catch_up()
    await ring
    assert held(replica, "t")


async def test_a_doorbell_applies_the_stores_unrevoke(replica: Replica, store: SqliteStore) -> None:
    revoked = await store.write(revoke("t"))
    await replica.apply_event(event(revoked))
    lifted = await store.write(unrevoke("t"))
    assert await replica.apply_event(event(lifted)) is Verdict.APPLIED
    assert not held(replica, "t")
    assert replica.bus_seq == lifted.seq


async def test_an_unconfirmed_doorbell_changes_nothing_and_keeps_the_cursor(
    replica: Replica, store: SqliteStore
) -> None:
    revoked = await store.write(revoke("t"))
    await replica.apply_event(event(revoked))
    ring = forged(Op.UNREVOKE, "t", revoked.seq + 1)
    assert await replica.apply_event(ring) is Verdict.UNCONFIRMED
    assert held(replica, "t")
    assert replica.bus_seq == revoked.seq
    assert replica.stats.rejected["unconfirmed_doorbell"] == 1
    # A doorbell naming another, later row passes the store check and moves bus_seq;
    # it still does not hide the genuine event carrying its seq.
    genuine = await store.write(revoke("v"))
    other = await store.write(revoke("u"))
    assert other.seq > genuine.seq
    ring = event(other, op=Op.UNREVOKE, seq=genuine.seq)
    assert await replica.apply_event(ring) is Verdict.APPLIED
    assert replica.bus_seq == genuine.seq
    assert await replica.apply_event(event(genuine)) is Verdict.APPLIED
    assert held(replica, "v")


# -- bus messages only restrict ---------------------------------------------------------


async def test_a_forged_cut_off_never_lowers_one(replica: Replica, store: SqliteStore) -> None:
    now = time.time()
    real = await store.write(cut("alice", now))
    await replica.apply_event(event(real))
    for seq in (real.seq + 1, 10**15):
        await replica.apply_event(
            forged(
                Op.REVOKE_IDENTITY, "alice", seq, cutoff=1.0, identity="alice", expires_at=now + 5
            )
        )
        assert replica.revocations.cutoff("alice") == now
        assert replica.revocations.is_revoked("x", "alice", now - 1)
    await replica.catch_up()
    await replica.catch_up()  # sheds what the first did not confirm
    assert replica.revocations.cutoff("alice") == now
    assert replica.revocations.snapshot_identities()["alice"] == (now, real.expires_at)


async def test_a_forged_shorter_expiry_never_shortens_a_revocation(
    replica: Replica, store: SqliteStore
) -> None:
    exp = time.time() + HOUR
    real = await store.write(revoke("t", exp=exp))
    await replica.apply_event(event(real))
    await replica.apply_event(event(real, seq=10**15, expires_at=time.time() + 1))
    assert replica.revocations.expires_at("t") == exp
    replica.revocations.sweep(time.time() + 60)
    assert held(replica, "t")


async def test_a_bus_revoke_is_held_until_a_store_read_confirms_it(
    replica: Replica, store: SqliteStore
) -> None:
    change = await store.write(revoke("t"))
    assert await replica.apply_event(event(change)) is Verdict.APPLIED
    assert held(replica, "t")
    assert replica.overlay_count == 1
    await replica.catch_up()
    assert held(replica, "t")
    assert replica.overlay_count == 0
    assert replica.stats.rejected["unconfirmed"] == 0


async def test_a_forged_revoke_is_shed_by_the_next_catch_up(
    replica: Replica, store: SqliteStore
) -> None:
    exp = time.time() + HOUR
    real = await store.write(revoke("t", exp=exp))
    await replica.catch_up()
    lifted = await store.write(unrevoke("t"))
    await replica.catch_up()
    assert not held(replica, "t")
    # Forged revokes: of the unrevoked token and of a token the store never saw.
    await replica.apply_event(event(real, seq=10**12))
    await replica.apply_event(forged(Op.REVOKE, "never", lifted.seq + 1))
    assert held(replica, "t")
    assert held(replica, "never")
    with capture_logs() as logs:
        await replica.catch_up()
    assert not held(replica, "t")
    assert not held(replica, "never")
    assert replica.overlay_count == 0
    assert replica.stats.rejected["unconfirmed"] == 2
    assert [e["event"] for e in logs].count("revsync.restriction_unconfirmed") == 2


async def test_an_overlay_arriving_during_a_catch_up_waits_for_the_next_one(
    replica: Replica, store: SqliteStore
) -> None:
    # The round a message arrives in decides which catch-up must have seen its change.
    await replica.catch_up()
    replica._round += 1  # as if a catch-up had just started and not yet read
    await replica.apply_event(forged(Op.REVOKE, "t", 10**9))
    replica._shed(replica._round)  # that catch-up ends: the message came too late for it
    assert held(replica, "t")
    await replica.catch_up()
    assert not held(replica, "t")


async def test_an_older_store_change_keeps_a_newer_bus_restriction_on_top(
    replica: Replica, store: SqliteStore
) -> None:
    await store.write(revoke("t"))
    lifted = await store.write(unrevoke("t"))
    again = await store.write(revoke("t"))
    await replica.apply_event(event(again))  # the bus is faster than the node's read
    await replica.apply_local(lifted)  # an older store change lands afterwards
    assert held(replica, "t")
    await replica.catch_up()
    assert held(replica, "t")
    assert replica.overlay_count == 0


async def test_a_shed_overlay_restores_the_latest_store_state_beneath_it(
    replica: Replica, store: SqliteStore
) -> None:
    await store.write(revoke("t"))
    lifted = await store.write(unrevoke("t"))
    await replica.apply_event(forged(Op.REVOKE, "t", 10**9))
    await replica.apply_local(lifted)  # arrives beneath the forged overlay
    assert held(replica, "t")
    await replica.catch_up()
    await replica.catch_up()
    assert not held(replica, "t")


async def test_a_lower_seq_restriction_still_merges_into_an_overlay(
    replica: Replica, store: SqliteStore
) -> None:
    now = time.time()
    await replica.apply_event(
        forged(Op.REVOKE_IDENTITY, "alice", 10**9, cutoff=now - 100, identity="alice")
    )
    real = await store.write(cut("alice", now))
    assert await replica.apply_event(event(real)) is Verdict.APPLIED
    assert replica.revocations.cutoff("alice") == now
    assert await replica.apply_event(event(real)) is Verdict.DUPLICATE
    await replica.catch_up()
    await replica.catch_up()
    assert replica.revocations.cutoff("alice") == now


# -- stale, duplicate and expired messages ---------------------------------------------


async def test_a_late_copy_of_a_change_already_read_is_a_duplicate(
    replica: Replica, store: SqliteStore
) -> None:
    change = await store.write(revoke("t"))
    await replica.catch_up()
    assert await replica.apply_event(event(change)) is Verdict.DUPLICATE
    assert replica.stats.duplicates == 1


async def test_a_restriction_below_the_cursor_that_adds_something_is_suspect(
    replica: Replica, store: SqliteStore
) -> None:
    await store.write(revoke("t"))
    lifted = await store.write(unrevoke("t"))
    await replica.catch_up()
    # A revoke numbered below what was read, for a token the store says is not
    # revoked: a late copy of a superseded change, a forgery, or a store gone back.
    assert await replica.apply_event(forged(Op.REVOKE, "t", lifted.seq - 1)) is Verdict.SUSPECT
    assert not held(replica, "t")
    assert replica.stats.rejected["stale"] == 1


async def test_an_echo_of_the_nodes_own_write_is_a_duplicate(
    replica: Replica, store: SqliteStore
) -> None:
    change = await store.write(revoke("t"))
    await replica.apply_local(change)
    assert await replica.apply_event(event(change)) is Verdict.DUPLICATE
    assert replica.overlay_count == 0


async def test_a_restriction_of_an_expired_token_is_ignored(
    replica: Replica, store: SqliteStore
) -> None:
    gone = forged(Op.REVOKE, "t", 1, expires_at=time.time() - 10)
    assert await replica.apply_event(gone) is Verdict.DUPLICATE
    assert not held(replica, "t")
    assert replica.overlay_count == 0


async def test_gaps_and_the_bus_cursor(replica: Replica, store: SqliteStore) -> None:
    one = await store.write(revoke("a"))
    two = await store.write(revoke("b"))
    three = await store.write(revoke("c"))
    assert await replica.apply_event(event(one)) is Verdict.APPLIED
    assert replica.stats.applied == 1
    assert replica.bus_seq == one.seq
    assert await replica.apply_event(event(three)) is Verdict.GAP
    assert replica.bus_seq == one.seq
    assert replica.stats.gaps == 1
    assert await replica.apply_event(event(two)) is Verdict.APPLIED
    assert replica.bus_seq == two.seq
    await replica.catch_up()
    assert replica.bus_seq == replica.store_seq == three.seq


async def test_too_many_unconfirmed_overlays_ask_for_a_catch_up(
    replica: Replica, store: SqliteStore
) -> None:
    verdicts = set()
    for n in range(PENDING_LIMIT + 1):
        verdicts.add(await replica.apply_event(forged(Op.REVOKE, f"t{n}", n + 1)))
    assert verdicts == {Verdict.APPLIED, Verdict.GAP}
    await replica.catch_up()
    await replica.catch_up()
    assert replica.overlay_count == 0
    assert replica.revocations.jti_count == 0


# -- the store going back in time ------------------------------------------------------


async def test_a_store_restored_from_a_backup_is_reread(
    replica: Replica, store: SqliteStore, tmp_path: Path
) -> None:
    live, backup = Path(store.path), tmp_path / "backup.db"
    await store.write(revoke("kept"))
    copy_sqlite(live, backup)
    await store.write(revoke("lost-1"))
    await store.write(revoke("lost-2"))
    await replica.catch_up()
    assert held(replica, "lost-2")
    copy_sqlite(backup, live)
    # New writes reuse the lost numbers, and overtake the node's cursor.
    for n in range(4):
        await store.write(revoke(f"new-{n}"))
    assert await store.head() > replica.store_seq
    with capture_logs() as logs:
        await replica.catch_up()
    assert all(held(replica, f"new-{n}") for n in range(4))
    assert held(replica, "kept")
    assert not held(replica, "lost-1")
    assert not held(replica, "lost-2")
    assert replica.stats.store_resets == 1
    lost = [e for e in logs if e["event"] == "revsync.store_history_lost"]
    assert len(lost) == 1
    assert lost[0]["log_level"] == "error"
    assert lost[0]["reason"] == "the write of seq 3 is gone: its seq now names another write"
    assert lost[0]["entries_dropped"] == 2


async def test_a_store_whose_head_falls_below_the_cursor_is_reread(
    replica: Replica, store: SqliteStore, tmp_path: Path
) -> None:
    live, backup = Path(store.path), tmp_path / "backup.db"
    copy_sqlite(live, backup)
    await store.write(revoke("lost"))
    await replica.catch_up()
    copy_sqlite(backup, live)
    with capture_logs() as logs:
        await replica.catch_up()
    assert not held(replica, "lost")
    assert replica.store_seq == 0
    assert replica.bus_seq == 0
    assert logs[-1]["reason"] == "store head 0 is below seq 1, which this node has read"
    new = await store.write(revoke("new"))
    assert await replica.apply_event(event(new)) is Verdict.APPLIED
    assert held(replica, "new")


async def test_a_new_epoch_makes_every_node_reread(replica: Replica, store: SqliteStore) -> None:
    await store.write(revoke("t"))
    await replica.catch_up()
    before = replica.history.position
    position = await store.new_epoch()
    assert before is not None
    assert position.epoch == before.epoch + 1
    assert position.store_id == before.store_id
    await replica.catch_up()
    assert replica.stats.store_resets == 1
    assert held(replica, "t")
    await replica.catch_up()
    assert replica.stats.store_resets == 1


@pytest.mark.parametrize("rewrite", ["same target", "other target", "nothing"])
async def test_without_the_ring_the_anchors_tell_lost_history(
    replica: Replica, store: SqliteStore, tmp_path: Path, rewrite: str
) -> None:
    """When the history ring has turned over since (here: its entry is not known), the
    last rows read decide: one that went back, vanished, or names another write."""
    live, backup = Path(store.path), tmp_path / "backup.db"
    await store.write(revoke("kept"))
    copy_sqlite(live, backup)
    await store.write(revoke("lost-1"))
    await store.write(revoke("lost-2"))
    await replica.catch_up()
    replica.history._frontier = None  # as if the ring had turned over since

    copy_sqlite(backup, live)
    if rewrite == "same target":  # lost-2's number reused for lost-2 itself
        await store.write(revoke("other"))
        await store.write(revoke("lost-2"))
    elif rewrite == "other target":
        await store.write(revoke("x"))
        await store.write(revoke("y"))
    else:
        await store.write(revoke("x"))
        await store.write(revoke("y"))
        await store.write(revoke("z"))
    with capture_logs() as logs:
        await replica.catch_up()
    assert replica.stats.store_resets == 1
    assert not held(replica, "lost-1")
    reasons = [e["reason"] for e in logs if e["event"] == "revsync.store_history_lost"]
    assert len(reasons) == 1
    assert "went back" in reasons[0] or "vanished" in reasons[0]


async def test_an_intact_history_is_never_taken_for_a_lost_one(
    replica: Replica, store: SqliteStore
) -> None:
    for n in range(5):
        await store.write(revoke(f"t{n}"))
        await store.write(unrevoke(f"t{n}"))
        await replica.catch_up()
        await store.write(revoke(f"t{n}"))  # supersedes an anchor
        await replica.catch_up()
    assert replica.stats.store_resets == 0


async def test_a_pruned_anchor_is_not_taken_for_lost_history(
    replica: Replica, store: SqliteStore
) -> None:
    await store.write(revoke("old", exp=time.time() + 5))
    await replica.catch_up()
    replica.history._frontier = None  # the anchors decide
    await store.prune(time.time() + 10)
    await replica.catch_up()
    assert replica.stats.store_resets == 0


async def test_an_own_revoke_numbered_below_the_cursor_is_still_refused_at_once(
    replica: Replica, store: SqliteStore, tmp_path: Path
) -> None:
    """The store went back in time and the node has not noticed yet: its own new revoke
    gets a number it has read past.  It must still refuse that token at once."""
    live, backup = Path(store.path), tmp_path / "backup.db"
    copy_sqlite(live, backup)
    for n in range(3):
        await store.write(revoke(f"lost-{n}"))
    await replica.catch_up()
    copy_sqlite(backup, live)
    mark = replica.write_mark()
    mine = await store.write(revoke("mine"))
    assert mine.seq <= replica.store_seq
    await replica.apply_local(mine, mark=mark)
    assert held(replica, "mine")
    assert replica.wants_catch_up
    with capture_logs() as logs:
        await replica.catch_up()  # re-reads the whole store at once
    assert logs[-1]["reason"] == (
        "this node's write was numbered 1, at or below seq 3 which it had read before writing"
    )
    assert held(replica, "mine")
    assert not held(replica, "lost-0")
    assert replica.stats.store_resets == 1


async def test_an_own_write_read_by_a_catch_up_first_changes_nothing(
    replica: Replica, store: SqliteStore
) -> None:
    mark = replica.write_mark()
    mine = await store.write(revoke("mine"))
    await replica.catch_up()  # reads it before the write's own answer is applied
    await replica.apply_local(mine, mark=mark)
    assert held(replica, "mine")
    lifted = await store.write(unrevoke("mine"))
    await replica.catch_up()
    await replica.apply_local(mine, mark=mark)  # a very late answer: changes nothing
    assert not held(replica, "mine")
    await replica.catch_up()
    assert not held(replica, "mine")
    assert replica.stats.store_resets == 0
    assert lifted.seq == replica.store_seq


class RestoreDuringRead:
    """The real store; the first ``since`` after ``arm()`` restores a backup into the
    live file and writes anew before reading: history changes under a catch-up."""

    def __init__(self, store: SqliteStore, backup: Path, rewrite: list[str]) -> None:
        self._store = store
        self._backup = backup
        self._rewrite = rewrite
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def since(self, seq: int, limit: int = 10_000) -> list[Change]:
        if self.armed:
            self.armed = False
            copy_sqlite(self._backup, Path(self._store.path))
            for key in self._rewrite:
                await self._store.write(revoke(key))
        return await self._store.since(seq, limit)


async def test_a_store_restored_while_a_catch_up_reads_is_noticed(
    store: SqliteStore, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.db"
    await store.write(revoke("kept"))
    copy_sqlite(Path(store.path), backup)
    swapping = RestoreDuringRead(store, backup, ["new-1", "new-2", "new-3"])
    replica = Replica(swapping, RevocationSet(), SyncStats())  # type: ignore[arg-type]
    await replica.catch_up()
    mine = await store.write(revoke("mine"))  # this node's own write, then lost
    await replica.apply_local(mine)
    swapping.armed = True
    await replica.catch_up()  # reads rows of the new history: must notice the swap
    assert replica.stats.store_resets == 1
    assert not held(replica, "mine")
    assert all(held(replica, f"new-{n}") for n in (1, 2, 3))
    assert held(replica, "kept")
    await replica.catch_up()
    assert replica.stats.store_resets == 1


async def test_a_restore_while_reading_is_noticed_with_nothing_of_its_own_lost(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Only the positions read around the catch-up can tell: the node wrote nothing."""
    backup = tmp_path / "backup.db"
    await store.write(revoke("kept"))
    copy_sqlite(Path(store.path), backup)
    await store.write(revoke("gone"))  # written elsewhere, never read by the node
    swapping = RestoreDuringRead(store, backup, ["new-1", "new-2"])
    replica = Replica(swapping, RevocationSet(), SyncStats())  # type: ignore[arg-type]
    first = await store.position()
    swapping.armed = True
    with capture_logs() as logs:
        await replica.catch_up()
    assert first.head == 2
    assert not held(replica, "gone")
    assert held(replica, "new-1")
    assert replica.stats.store_resets == 1
    reasons = [e["reason"] for e in logs if e["event"] == "revsync.store_history_lost"]
    assert reasons == [
        "the write of seq 2 vanished while this node read the store: "
        "its seq now names another write"
    ]


async def test_an_own_write_lost_and_overtaken_is_noticed(
    replica: Replica, store: SqliteStore, tmp_path: Path
) -> None:
    live, backup = Path(store.path), tmp_path / "backup.db"
    await store.write(revoke("kept"))
    await replica.catch_up()
    copy_sqlite(live, backup)
    mine = await store.write(revoke("mine"))
    await replica.apply_local(mine)
    copy_sqlite(backup, live)
    for n in range(3):  # new writes overtake the lost seq: the head check cannot tell
        await store.write(revoke(f"new-{n}"))
    with capture_logs() as logs:
        await replica.catch_up()
    assert not held(replica, "mine")
    assert replica.stats.store_resets == 1
    assert any("which this node read, is gone" in str(e.get("reason")) for e in logs)


async def test_an_own_write_pruned_before_the_catch_up_is_no_false_alarm(
    replica: Replica, store: SqliteStore
) -> None:
    soon = time.time() + 60  # within ANCHOR_MARGIN: prunable by a node whose clock runs ahead
    mine = await store.write(revoke("mine", exp=soon))
    await replica.apply_local(mine)
    await store.prune(soon + 1)
    await store.write(revoke("other"))
    await replica.catch_up()
    assert replica.stats.store_resets == 0


# -- what the mutation run asked for ---------------------------------------------------


async def test_catch_up_counts_rows_and_pages_through_everything(
    replica: Replica, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replica_module, "PAGE_SIZE", 3)
    for n in range(7):
        await store.write(revoke(f"t{n}"))
    assert await replica.catch_up() == 7
    assert all(held(replica, f"t{n}") for n in range(7))
    assert replica.store_seq == 7
    assert await replica.catch_up() == 0


async def test_a_page_mixing_own_targets_and_others_applies_them_all(
    replica: Replica, store: SqliteStore
) -> None:
    mine = await store.write(revoke("mine"))
    await replica.apply_local(mine)
    for n in range(3):
        await store.write(revoke(f"other-{n}"))
    await replica.catch_up()
    assert all(held(replica, f"other-{n}") for n in range(3))
    assert held(replica, "mine")
    assert replica.stats.store_resets == 0  # its own write was found on the way
    assert replica._ahead == {}


def test_changes_ahead_of_the_cursor_are_kept_until_passed(replica: Replica) -> None:
    change = Change(5, Kind.JTI, "t", True, time.time() + HOUR, None, None, time.time())
    replica._ahead[(Kind.JTI, "t")] = change
    assert replica._pass_ahead({}) is None  # store_seq 0: not passed yet
    assert replica._ahead == {(Kind.JTI, "t"): change}


async def test_a_head_below_an_own_write_means_lost_history(
    replica: Replica, store: SqliteStore, tmp_path: Path
) -> None:
    live, backup = Path(store.path), tmp_path / "backup.db"
    await store.write(revoke("kept"))
    await replica.catch_up()
    copy_sqlite(live, backup)
    mine = await store.write(revoke("mine"))
    await replica.apply_local(mine)  # beyond the cursor: store_seq is still 1
    copy_sqlite(backup, live)
    with capture_logs() as logs:
        await replica.catch_up()
    assert not held(replica, "mine")
    assert logs[-1]["reason"] == "store head 1 is below seq 2, which this node has read"


async def test_a_verified_write_whose_ring_slot_is_empty_is_gone(
    replica: Replica, store: SqliteStore, tmp_path: Path
) -> None:
    live, backup = Path(store.path), tmp_path / "backup.db"
    await store.write(revoke("kept"))
    copy_sqlite(live, backup)
    await store.write(revoke("lost-2"))
    await store.write(revoke("lost-3"))
    await replica.catch_up()  # verified up to seq 3
    copy_sqlite(backup, live)
    # One write of three changes: seqs 2, 3, 4, of which the ring records only 4.
    await store.write_many([revoke("n2"), revoke("n3"), revoke("n4")])
    with capture_logs() as logs:
        await replica.catch_up()
    assert logs[-1]["reason"] == "the write of seq 3 is gone: its slot in the history ring is empty"
    assert not held(replica, "lost-3")
    assert replica.resets == 1


async def test_a_batch_that_turns_the_ring_over_still_tells_lost_history(
    replica: Replica, store: SqliteStore, tmp_path: Path
) -> None:
    """After a restore, one write of more than HISTORY_SLOTS changes reuses the lost
    numbers and the slot of the node's verified write; the write's range says so."""
    live, backup = Path(store.path), tmp_path / "backup.db"
    await store.write(revoke("kept"))
    copy_sqlite(live, backup)
    soon = time.time() + 200  # short-lived: the anchors cannot tell
    await store.write(revoke("lost-2", exp=soon))
    await store.write(revoke("lost-3", exp=soon))
    await replica.catch_up()  # verified up to seq 3
    copy_sqlite(backup, live)
    batch = await store.write_many([revoke(f"n{n}") for n in range(HISTORY_SLOTS + 2)])
    assert batch[0].seq == 2
    assert batch[-1].seq % HISTORY_SLOTS == 3  # the slot of seq 3, now inside this write
    with capture_logs() as logs:
        await replica.catch_up()
    assert logs[-1]["reason"] == (
        "the write of seq 3 is gone: its seq now lies inside another write"
    )
    assert held(replica, "n0")
    assert not held(replica, "lost-3")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("older", "row seq 3 (jti) went back to seq 1"),
        ("renumbered", "row seq 3 (jti) now names another write"),
        ("vanished", "row seq 3 (jti) vanished from the store"),
    ],
)
async def test_each_anchor_verdict(
    replica: Replica, store: SqliteStore, tmp_path: Path, case: str, reason: str
) -> None:
    live, backup = Path(store.path), tmp_path / "backup.db"
    if case == "older":
        await store.write(revoke("a"))  # seq 1: "a" existed before the backup
    else:
        await store.write(revoke("z"))
    copy_sqlite(live, backup)
    await store.write(revoke("b"))
    await store.write(revoke("a"))  # seq 3: the newest anchor
    await replica.catch_up()
    replica.history._frontier = None  # the ring has turned over: anchors decide
    replica.history._anchors = replica.history._anchors[-1:]  # "a", seq 3, alone
    copy_sqlite(backup, live)
    await store.write(revoke("c"))
    if case == "renumbered":
        await store.write(revoke("a"))  # seq 3 again, another write
    else:
        await store.write(revoke("d"))
    with capture_logs() as logs:
        await replica.catch_up()
    assert logs[-1]["reason"] == reason


async def test_a_reread_starts_over_if_history_changes_while_it_reads(
    store: SqliteStore, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.db"
    await store.write(revoke("kept"))
    copy_sqlite(Path(store.path), backup)
    await store.write(revoke("lost"))
    swapping = RestoreDuringRead(store, backup, ["n1", "n2", "n3"])
    replica = Replica(swapping, RevocationSet(), SyncStats())  # type: ignore[arg-type]
    await replica.catch_up()
    await store.new_epoch()  # the next catch-up re-reads ...
    swapping.armed = True  # ... and history changes under that re-read
    await replica.catch_up()
    assert replica.resets == 1
    assert not held(replica, "lost")
    assert all(held(replica, key) for key in ("kept", "n1", "n2", "n3"))
    assert replica.store_seq == await store.head()


async def test_a_write_answered_after_a_reread_is_read_back_from_the_store(
    replica: Replica, store: SqliteStore
) -> None:
    change = await store.write(revoke("t"))
    lifted = await store.write(unrevoke("t"))
    mark = replica.write_mark()
    await store.new_epoch()
    await replica.catch_up()  # re-reads: the store says unrevoked
    assert replica.resets == mark.resets + 1
    await replica.apply_local(change, mark=mark)  # a revoke from before the re-read
    assert not held(replica, "t")
    assert lifted.seq == replica.store_seq


async def test_a_write_made_after_a_reread_it_straddled_is_read_back(
    replica: Replica, store: SqliteStore
) -> None:
    mark = replica.write_mark()  # the write begins ...
    await store.new_epoch()
    await replica.catch_up()  # ... the node re-reads the whole store ...
    change = await store.write(revoke("t"))  # ... and the write commits after that
    await replica.apply_local(change, mark=mark)
    assert held(replica, "t")  # read back from the store, which has it


class SinceGate:
    """The real store; once armed, the next ``since`` waits for ``gate`` (a re-read
    holding the replica's lock for as long as the test says)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.entered = asyncio.Event()
        self.gate: asyncio.Event | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def since(self, seq: int, limit: int = 10_000) -> list[Change]:
        gate, self.gate = self.gate, None
        if gate is not None:
            self.entered.set()
            await gate.wait()
        return await self._store.since(seq, limit)


async def test_a_write_answered_while_a_reread_holds_the_lock_is_no_second_alarm(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Found failing over the Redis store on Cluster (tests/scale/test_store_failover.py):
    the writing node re-read the store twice, the second time "numbered 21, at or below
    seq 40 which it had read before writing", with nothing dropped.  Its write's answer
    passed the re-read check before the re-read ended, waited for the lock the re-read
    held, and was then taken for a write into a store gone back in time."""
    live, backup = Path(store.path), tmp_path / "backup.db"
    gated = SinceGate(store)
    replica = Replica(gated, RevocationSet(), SyncStats())  # type: ignore[arg-type]
    copy_sqlite(live, backup)
    for n in range(3):
        await store.write(revoke(f"lost-{n}"))
    await replica.catch_up()
    copy_sqlite(backup, live)  # the store lost seqs 1-3
    mark = replica.write_mark()
    mine = await store.write(revoke("mine"))  # numbered 1 again
    gate = gated.gate = asyncio.Event()
    catching_up = asyncio.create_task(replica.catch_up())  # notices, re-reads ...
    await gated.entered.wait()  # ... and holds the lock while it reads
    applying = asyncio.create_task(replica.apply_local(mine, mark=mark))
    for _ in range(5):
        await asyncio.sleep(0)  # the write's answer now waits for that lock
    gate.set()
    await asyncio.gather(catching_up, applying)
    assert replica.resets == 1
    with capture_logs() as logs:
        await replica.catch_up()
    assert replica.resets == 1, logs
    assert held(replica, "mine")
    assert not held(replica, "lost-0")


async def test_a_reread_pages_through_everything_and_counts_it(
    replica: Replica, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replica_module, "PAGE_SIZE", 2)
    for n in range(5):
        await store.write(revoke(f"t{n}"))
    await replica.catch_up()
    await store.new_epoch()
    assert await replica.catch_up() == 5
    assert replica.resets == 1
    assert all(held(replica, f"t{n}") for n in range(5))
    assert replica.store_seq == replica.bus_seq == 5


async def test_token_registrations_always_apply(replica: Replica, store: SqliteStore) -> None:
    token = ChangeRequest(Kind.ISSUED, "issued", False, time.time() + HOUR, "alice")
    change = await store.write(token)
    await replica.catch_up()
    replica.revocations.clear()
    await replica.apply_local(change)  # numbered below the cursor: applied all the same
    assert replica.revocations.is_allowed("issued")
    assert not replica.wants_catch_up


async def test_a_restriction_expired_within_the_leeway_still_applies(store: SqliteStore) -> None:
    replica = Replica(store, RevocationSet(leeway=60), SyncStats())
    await replica.catch_up()
    late = forged(Op.REVOKE, "t", 1, expires_at=time.time() - 30)
    assert await replica.apply_event(late) is Verdict.APPLIED
    assert held(replica, "t")


async def test_a_bus_revoke_older_than_an_own_newer_unrevoke_is_a_duplicate(
    replica: Replica, store: SqliteStore
) -> None:
    revoked = await store.write(revoke("t"))
    lifted = await store.write(unrevoke("t"))
    await replica.apply_local(lifted)
    assert await replica.apply_event(event(revoked)) is Verdict.DUPLICATE
    assert not held(replica, "t")
    assert replica.stats.rejected["stale"] == 0


async def test_a_stale_restriction_with_a_later_expiry_is_suspect(
    replica: Replica, store: SqliteStore
) -> None:
    change = await store.write(revoke("t", exp=time.time() + 60))
    await replica.catch_up()
    longer = event(change, expires_at=time.time() + HOUR)
    assert await replica.apply_event(longer) is Verdict.SUSPECT
    assert replica.revocations.expires_at("t") == change.expires_at


def test_a_new_replica_asks_for_nothing(store: SqliteStore) -> None:
    replica = Replica(store, RevocationSet(), SyncStats())
    assert replica.wants_catch_up is False
    assert replica.resets == 0


async def test_the_collector_is_paused_during_a_snapshot_only(
    store: SqliteStore,
) -> None:
    states: list[bool] = []

    class Watching:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def since(self, seq: int, limit: int = 10_000) -> list[Change]:
            states.append(gc.isenabled())
            return await store.since(seq, limit)

    await store.write(revoke("t"))
    replica = Replica(Watching(), RevocationSet(), SyncStats())  # type: ignore[arg-type]
    await replica.catch_up()
    await store.write(revoke("u"))
    await replica.catch_up()
    assert states == [False, True]
    assert gc.isenabled()


async def test_superseded_anchors_are_no_sign_of_lost_history(
    replica: Replica, store: SqliteStore
) -> None:
    for n in range(4):
        await store.write(revoke(f"t{n}"))
        await replica.catch_up()
        replica.history._frontier = None  # the anchors decide
        await store.write(unrevoke(f"t{n}"))  # later changes of the anchored tokens
        await store.write(revoke(f"t{n}"))
    await replica.catch_up()
    assert replica.stats.store_resets == 0


async def test_after_a_reread_its_own_anchors_tell_the_next_loss(
    replica: Replica, store: SqliteStore, tmp_path: Path
) -> None:
    live, backup = Path(store.path), tmp_path / "backup.db"
    await store.write(revoke("a"))
    await replica.catch_up()
    await store.new_epoch()
    copy_sqlite(live, backup)  # "a", epoch 2
    await store.write(revoke("b"))
    await store.write(revoke("c"))
    await replica.catch_up()  # re-reads (new epoch): its anchors are "b" and "c"
    assert replica.resets == 1
    replica.history._frontier = None  # the ring has turned over: anchors decide
    copy_sqlite(backup, live)  # loses "b" and "c"; same epoch
    await store.write(revoke("x"))
    await store.write(revoke("y"))  # the head is back where it was
    await replica.catch_up()
    assert replica.resets == 2
    assert not held(replica, "c")
    assert held(replica, "y")


async def test_a_change_held_from_beyond_the_cursor_whose_seq_now_names_another_write(
    replica: Replica, store: SqliteStore, tmp_path: Path
) -> None:
    """Found by the model: a doorbell read (beyond the cursor) of seq 1, the store
    restored to empty, a new write numbered 1 again; the head never fell below what
    the node had seen and it had verified nothing yet."""
    live, backup = Path(store.path), tmp_path / "backup.db"
    copy_sqlite(live, backup)
    lifted = await store.write(unrevoke("t"))
    assert await replica.apply_event(event(lifted)) is Verdict.APPLIED  # a doorbell
    copy_sqlite(backup, live)
    again = await store.write(revoke("t"))
    assert again.seq == lifted.seq
    with capture_logs() as logs:
        await replica.catch_up()
    assert held(replica, "t")
    assert replica.resets == 1
    assert logs[-1]["reason"] == "seq 1 (jti), which this node read, names another write"
