"""A node's checkpoint: its copy of the store in a local file, so a restart reads only
what changed since (``REVSYNC_CHECKPOINT_PATH``; docs/design.md, "Checkpoints").

A checkpoint holds what a node held at a store seq S when nothing it held came from
beyond S (no write of its own or bus restriction waiting for a catch-up): the store's
live rows up to S, and what the node had verified of the store's history at S (its id
and epoch, the newest write verified, the last rows read).  A restart loads it only
after the checks every catch-up makes (``revsync._store_history``): the same store id
and epoch, a head not below S, the history ring and the last rows read agreeing with
it.  Then it pages the store from S.  A file that is missing, damaged (checksum,
format, byte order), of another store, or contradicted by the store is refused: the
node reads the store's snapshot as if there were none, and says why.

The file: a first line naming the format, a line with the SHA-256 of everything after
it, a JSON header, then the body: revoked jtis and registrations as newline-joined keys
and little-endian float64 expiries, which load in C.  Written to a temporary file
beside it, then renamed over it, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from revsync._logging import get_logger
from revsync._revocation_set import RevocationSet
from revsync._store_history import INTACT, HistoryWatch, judge
from revsync.changes import Change
from revsync.stores._common import changes_from_rows
from revsync.stores.base import Snapshot, Store, StorePosition

__all__ = ["Checkpoint", "capture", "load", "read", "save", "write"]

logger = get_logger()

MAGIC = b"revsync-checkpoint 1\n"
MAX_DELTA = 200_000
"""Changes a checkpoint may be behind the store's head and still be used: past that,
paging them would take longer than the store's snapshot."""
_SECTIONS = ("revoked_keys", "revoked_expiries", "registered_keys", "registered_expiries")


class _Unusable(Exception):
    """A checkpoint file that cannot be used; the message says why.  Never leaves this
    module: the node reads the store instead."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A node's copy of the store at one seq, and what it had verified of its history."""

    position: StorePosition
    """The store's id and epoch as the node last verified them; ``head`` is the seq S."""
    frontier: tuple[int, float] | None
    """(seq, stamp) of the newest write verified in the store's history ring."""
    anchors: list[Change]
    snapshot: Snapshot
    """The live rows up to S, as a store's snapshot gives them."""


async def load(
    path: Path, store: Store, clock: Callable[[], float] = time.time
) -> Checkpoint | None:
    """The checkpoint in ``path`` if the store confirms it (see the module docstring),
    else None, and a log line that says why it was not used."""
    try:
        checkpoint = await asyncio.to_thread(read, path)
    except FileNotFoundError:
        logger.info("revsync.checkpoint_missing", path=str(path))
        return None
    except _Unusable as exc:
        _refused(path, str(exc))
        return None
    except OSError as exc:
        _refused(path, f"{type(exc).__name__}: {exc}")
        return None
    watch = HistoryWatch(store, clock=clock)
    watch.resume(checkpoint.position, checkpoint.frontier, checkpoint.anchors)
    now = await store.position()
    seq = checkpoint.position.head
    reason = await watch.lost(now, seq) or await _unproven(store, checkpoint)
    if reason is not None:
        _refused(path, reason)
        return None
    if now.head - seq > MAX_DELTA:
        logger.info("revsync.checkpoint_outdated", path=str(path), seq=seq, head=now.head)
        return None
    logger.info(
        "revsync.checkpoint_loaded",
        path=str(path),
        seq=seq,
        head=now.head,
        entries=checkpoint.snapshot.rows,
    )
    return checkpoint


async def _unproven(store: Store, checkpoint: Checkpoint) -> str | None:
    """Why the store's history cannot vouch for ``checkpoint``, or None if it does.

    A running node may take "nothing contradicts" for intact; a checkpoint may be old,
    and once the ring has turned over and its last rows have expired (short-lived
    tokens, pruned) nothing is left to contradict a store restored behind it and
    written past it since: paging from its seq would skip the changes numbered below
    it.  So a checkpoint is used only on proof: its newest write still in the ring, or
    one of its last rows still in the store as it was read."""
    if checkpoint.frontier is None:
        return None if checkpoint.position.head == 0 else "it names no verified write"
    seq, stamp = checkpoint.frontier
    if judge(await store.history(seq), seq, stamp) == INTACT:
        return None
    for anchor in checkpoint.anchors:
        row = await store.get(anchor.kind, anchor.key)
        if row is not None and row.seq == anchor.seq and row.created_at == anchor.created_at:
            return None
    return "the store's history no longer shows its newest write nor its last rows"


def _refused(path: Path, reason: str) -> None:
    logger.warning(
        "revsync.checkpoint_refused",
        path=str(path),
        reason=reason,
        action="reading the store's snapshot instead",
    )


async def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` in a thread; a failure is logged, never raised (the node's
    state is in the store: a checkpoint only saves reading it)."""
    try:
        size = await asyncio.to_thread(write, path, checkpoint)
    except OSError as exc:
        logger.warning(
            "revsync.checkpoint_not_written", path=str(path), error=f"{type(exc).__name__}: {exc}"
        )
        return
    logger.info(
        "revsync.checkpoint_written",
        path=str(path),
        seq=checkpoint.position.head,
        entries=checkpoint.snapshot.rows,
        bytes=size,
    )


def capture(
    revocations: RevocationSet,
    position: StorePosition,
    frontier: tuple[int, float] | None,
    anchors: list[Change],
) -> Checkpoint:
    """What ``revocations`` holds, taken at once (no await): call it when the node's
    state is exactly the store's at ``position.head``."""
    held = revocations.columns()
    snapshot = held._replace(seq=position.head, anchors=list(anchors))
    return Checkpoint(position, frontier, list(anchors), snapshot)


def write(path: Path, checkpoint: Checkpoint) -> int:
    """Write ``checkpoint`` to ``path`` atomically; return its size in bytes.  Blocking:
    run it in a thread.  Raises OSError when the file cannot be written."""
    snapshot = checkpoint.snapshot
    columns = [_column(*snapshot.revoked), _column(*snapshot.registered)]
    sections = [section for _, *column in columns for section in column]
    body = b"".join(sections)
    header = {
        "store_id": checkpoint.position.store_id,
        "epoch": checkpoint.position.epoch,
        "seq": checkpoint.position.head,
        "stamp": checkpoint.position.stamp,
        "frontier": checkpoint.frontier,
        "anchors": [_row(change) for change in checkpoint.anchors],
        "others": [_row(change) for change in snapshot.others],
        "counts": [len(snapshot.revoked[0]), len(snapshot.registered[0])],
        "keys": [encoding for encoding, *_ in columns],
        "sections": [len(section) for section in sections],
    }
    line = json.dumps(header, separators=(",", ":")).encode() + b"\n"
    digest = hashlib.sha256(line)
    digest.update(body)
    data = MAGIC + digest.hexdigest().encode() + b"\n" + line
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return len(data) + len(body)


def read(path: Path) -> Checkpoint:
    """The checkpoint in ``path``.  Blocking: run it in a thread.  Raises
    FileNotFoundError when there is none and _Unusable when it cannot be used."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        msg = "not a revsync checkpoint of this format"
        raise _Unusable(msg)
    digest_end = data.find(b"\n", len(MAGIC))
    checked = memoryview(data)[digest_end + 1 :]
    if hashlib.sha256(checked).hexdigest().encode() != data[len(MAGIC) : digest_end]:
        msg = "its checksum does not match its content"
        raise _Unusable(msg)
    end = data.find(b"\n", digest_end + 1)
    try:
        header = json.loads(data[digest_end + 1 : end])
        body = memoryview(data)[end + 1 :]
        parts, start = [], 0
        for size in header["sections"]:
            parts.append(body[start : start + size])
            start += size
        if start != len(body) or len(parts) != len(_SECTIONS):
            msg = "its sections do not add up"
            raise _Unusable(msg)
        (revoked_count, registered_count), (revoked_keys, registered_keys) = (
            header["counts"],
            header["keys"],
        )
        snapshot = Snapshot(
            int(header["seq"]),
            _parse(revoked_keys, parts[0], parts[1], revoked_count),
            _parse(registered_keys, parts[2], parts[3], registered_count),
            changes_from_rows(header["others"]),
            changes_from_rows(header["anchors"]),
        )
        frontier = header["frontier"]
        position = StorePosition(
            str(header["store_id"]), int(header["epoch"]), snapshot.seq, header["stamp"]
        )
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        msg = f"it cannot be parsed ({type(exc).__name__}: {exc})"
        raise _Unusable(msg) from exc
    return Checkpoint(
        position,
        None if frontier is None else (int(frontier[0]), float(frontier[1])),
        snapshot.anchors,
        snapshot,
    )


def _column(keys: list[str], expiries: list[float]) -> tuple[str, bytes, bytes]:
    """(how the keys are written, the keys, the expiries): keys one a line, which split
    fastest, or a JSON array when a key holds a newline."""
    joined = "\n".join(keys)
    if joined.count("\n") == max(len(keys) - 1, 0):
        encoding, text = "lines", joined
    else:
        encoding, text = "json", json.dumps(keys, ensure_ascii=False)
    values = array.array("d", expiries)
    if sys.byteorder != "little":
        values.byteswap()
    return encoding, text.encode("utf-8", "surrogatepass"), values.tobytes()


def _parse(
    encoding: str, keys: memoryview, expiries: memoryview, count: int
) -> tuple[list[str], list[float]]:
    text = str(keys, "utf-8", "surrogatepass")
    if encoding == "json":
        names: list[str] = json.loads(text)
    elif encoding == "lines":
        names = text.split("\n") if count else []
    else:
        msg = f"its keys are written as {encoding!r}, which this version does not read"
        raise _Unusable(msg)
    values = array.array("d")
    values.frombytes(expiries)
    if sys.byteorder != "little":
        values.byteswap()
    if not len(names) == len(values) == count:
        msg = f"it lists {len(names)} keys and {len(values)} expiries, not {count}"
        raise _Unusable(msg)
    return names, values.tolist()


def _row(change: Change) -> list[Any]:
    return [change.seq, change.kind.value, *change[2:]]
