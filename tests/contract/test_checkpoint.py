"""A node's checkpoint file (REVSYNC_CHECKPOINT_PATH) against every real store.

A restart that loads a checkpoint reads only the rows written since and holds what a
node reading the whole store holds.  A checkpoint the store does not confirm is
refused, loudly, and the whole store is read instead: a damaged file, another
store's, another epoch's, one ahead of the store's head, one whose write the store's
history ring says is gone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from revsync import _checkpoint
from revsync._replica import Replica
from revsync._revocation_set import RevocationSet
from revsync._stats import SyncStats
from revsync.changes import ChangeRequest, Kind
from revsync.config import SettingError, Settings, resolve
from revsync.stores import Store

from . import test_store_snapshot as snapshot_tests
from .test_store_snapshot import Paged, contents, fill, revoke

NOW = time.time()


@pytest.fixture(autouse=True)
def _clock_starts_with_the_test() -> None:
    # Expiries here are relative to NOW and some are minutes away; the whole suite
    # runs longer than that, so each test takes its own NOW, not the import's.
    global NOW
    NOW = snapshot_tests.NOW = time.time()  # fill() writes with that module's clock


def node(store: Store, path: Path | None) -> Replica:
    return Replica(store, RevocationSet(), SyncStats(), checkpoint=path)


async def reference(store: Store) -> tuple[Any, ...]:
    """What a node that reads the whole store holds."""
    replica = Replica(Paged(store), RevocationSet(), SyncStats())  # type: ignore[arg-type]
    await replica.catch_up()
    return contents(replica.revocations)


async def checkpointed(store: Store, path: Path) -> Replica:
    """A node that read the store and wrote its checkpoint to ``path``."""
    first = node(store, path)
    await first.catch_up()
    await first.save_checkpoint()
    assert path.is_file()  # noqa: ASYNC240 - a test's local file
    return first


def events(logs: list[dict[str, Any]], prefix: str = "revsync.checkpoint") -> list[str]:
    return [entry["event"] for entry in logs if entry["event"].startswith(prefix)]


async def test_a_restart_reads_only_what_changed_since(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "node.checkpoint"
    await fill(store)
    await checkpointed(store, path)
    await store.write(ChangeRequest(Kind.JTI, "jti-1", False, 0.0))  # unrevoked since
    await store.write(revoke("new", NOW + 900))
    restarted = node(store, path)
    with capture_logs() as logs:
        rows = await restarted.catch_up()
    assert events(logs) == ["revsync.checkpoint_loaded"]
    assert rows == 2  # the two changes since: not the store
    assert contents(restarted.revocations) == await reference(store)
    assert restarted.store_seq == await store.head()
    assert not restarted.revocations.contains_jti("jti-1")
    assert restarted.revocations.contains_jti("new")
    # It goes on like any node: the next catch-up checks the history it took up.
    await store.write(revoke("later", NOW + 900))
    assert await restarted.catch_up() == 1
    assert restarted.stats.store_resets == 0


async def test_nothing_is_written_while_the_node_holds_state_from_beyond_its_cursor(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "node.checkpoint"
    await fill(store)
    replica = node(store, path)
    await replica.catch_up()
    mark = replica.write_mark()
    await replica.apply_local(await store.write(revoke("mine", NOW + 500)), mark=mark)
    await replica.save_checkpoint()  # its own write is not confirmed by a catch-up yet
    assert not path.exists()
    await replica.catch_up()
    await replica.save_checkpoint()
    assert path.exists()


async def _refused(store: Store, path: Path) -> str:
    """Start a node on ``path``: it must refuse the checkpoint, read the whole store and
    hold what any node holds; return the reason it gave."""
    restarted = node(store, path)
    with capture_logs() as logs:
        rows = await restarted.catch_up()
    refused = [e for e in logs if e["event"] == "revsync.checkpoint_refused"]
    assert len(refused) == 1, events(logs)
    assert rows > 0
    assert contents(restarted.revocations) == await reference(store)
    assert restarted.stats.store_resets == 0
    return str(refused[0]["reason"])


async def test_a_damaged_checkpoint_is_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "node.checkpoint"
    await fill(store)
    await checkpointed(store, path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of an expiry
    path.write_bytes(bytes(data))
    assert "checksum" in await _refused(store, path)
    path.write_bytes(b"not a checkpoint\n")
    assert "format" in await _refused(store, path)


async def test_a_checkpoint_of_another_epoch_is_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "node.checkpoint"
    await fill(store)
    await checkpointed(store, path)
    await store.new_epoch()
    assert "epoch" in await _refused(store, path)


async def _forged(store: Store, path: Path, **position: Any) -> None:
    """A well-formed checkpoint of this store's rows whose position says ``position``."""
    replica = await checkpointed(store, path)
    checkpoint = _checkpoint.read(path)
    at = checkpoint.position._replace(**position)
    frontier = checkpoint.frontier
    if "head" in position:
        frontier = None
    _checkpoint.write(
        path,
        _checkpoint.capture(replica.revocations, at, frontier, checkpoint.anchors),
    )


async def test_a_checkpoint_of_another_store_is_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "node.checkpoint"
    await fill(store)
    await _forged(store, path, store_id="another-store")
    assert "identity" in await _refused(store, path)


async def test_a_checkpoint_ahead_of_the_store_is_refused(store: Store, tmp_path: Path) -> None:
    """The store lost its newest writes (a failover): its head is below the checkpoint."""
    path = tmp_path / "node.checkpoint"
    await fill(store)
    await _forged(store, path, head=await store.head() + 5)
    assert "below" in await _refused(store, path)


async def test_a_checkpoint_the_history_ring_contradicts_is_refused(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "node.checkpoint"
    await fill(store)
    replica = await checkpointed(store, path)
    checkpoint = _checkpoint.read(path)
    assert checkpoint.frontier is not None
    seq, stamp = checkpoint.frontier
    # The ring says the write that handed out this seq happened at another time.
    _checkpoint.write(
        path,
        _checkpoint.capture(
            replica.revocations, checkpoint.position, (seq, stamp - 1.0), checkpoint.anchors
        ),
    )
    assert "names another write" in await _refused(store, path)


async def test_a_checkpoint_too_far_behind_gives_way_to_the_snapshot(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "node.checkpoint"
    await fill(store)
    await checkpointed(store, path)
    monkeypatch.setattr(_checkpoint, "MAX_DELTA", 1)
    await store.write_many([revoke("a", NOW + 60), revoke("b", NOW + 60)])
    restarted = node(store, path)
    with capture_logs() as logs:
        await restarted.catch_up()
    assert events(logs) == ["revsync.checkpoint_outdated"]
    assert contents(restarted.revocations) == await reference(store)


async def test_a_missing_checkpoint_means_reading_the_store(store: Store, tmp_path: Path) -> None:
    await fill(store)
    restarted = node(store, tmp_path / "none-yet")
    with capture_logs() as logs:
        assert await restarted.catch_up() > 0
    assert events(logs) == ["revsync.checkpoint_missing"]
    assert contents(restarted.revocations) == await reference(store)


def test_the_setting_names_a_file_in_an_existing_folder(tmp_path: Path) -> None:
    settings = resolve({"REVSYNC_CHECKPOINT_PATH": str(tmp_path / "c")}, {})
    assert settings.checkpoint_path == str(tmp_path / "c")
    assert resolve({"REVSYNC_CHECKPOINT_PATH": ""}, {}).checkpoint_path is None
    assert Settings().checkpoint_path is None  # off unless asked for
    for bad in (str(tmp_path), str(tmp_path / "missing" / "c")):
        with pytest.raises(SettingError, match="REVSYNC_CHECKPOINT_PATH"):
            resolve({"REVSYNC_CHECKPOINT_PATH": bad}, {})
