"""A node with REVSYNC_CHECKPOINT_PATH: stopped, it leaves a checkpoint; started again,
it takes it up and reads only what changed meanwhile, over real stores and Redis."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from tests.engine.conftest import NodeFactory, claims


async def test_a_restarted_node_reads_only_what_changed_while_it_was_down(
    make_node: NodeFactory, store_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "node.checkpoint"
    writer = await make_node(store_url)
    first, gone, later = claims(), claims(), claims()
    await writer.revoke(first)
    await writer.revoke(gone)
    node = await make_node(store_url, checkpoint_path=str(path))
    assert node.is_revoked(first)
    await node.stop()
    assert path.is_file()

    await writer.unrevoke(str(gone["jti"]))  # while the node is down
    await writer.revoke(later)
    with capture_logs() as logs:  # a new process: nothing but the file is left
        node = await make_node(store_url, checkpoint_path=str(path))
    loaded = [e for e in logs if e["event"] == "revsync.checkpoint_loaded"]
    assert len(loaded) == 1
    assert node.status()["backfill"]["rows"] == 2  # the unrevoke and the revoke
    assert node.is_revoked(first)
    assert node.is_revoked(later)
    assert not node.is_revoked(gone)
