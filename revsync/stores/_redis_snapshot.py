"""The Redis store's start-up snapshot: read from its index, or built while it reads.

Every write script keeps an index of the rows (``revsync/stores/lua/index.lua``):
three sorted sets by seq, revoked jtis and registrations listed as
"<key>\\n<expires_at>".  A snapshot first runs ``snapshot_plan.lua``, which reads the
head and says whether the index holds every row up to it:

- If it does, each set is read in spans of seqs the plan cut (at most ``chunk``
  entries each, one script run each, two runs in flight so that Redis answers one
  while this process parses the other): the spans come back as text, one entry a
  line, and are split in C (with hiredis installed, a plain ZRANGE, its reply parsed
  in C too).  No row is looked up but the few "others" (identity cut-offs,
  tombstones).
- If not (a store written by a revsync without the index, or by one since), it reads
  every row listed in the log, as before, and lists each in the index as it goes;
  ``index_finish.lua`` then marks the index complete if no write that keeps no index
  came in between.  Several nodes starting at once join the same build.

Either way a row rewritten while the spans are read moves past the head (the catch-up
after reads it), and a row pruned meanwhile was expired anyway.  A read of the index
ends with ``snapshot_check.lua``: if another node began building the index afresh
meanwhile (which empties its sets, under a new build id), the spans read after that
missed entries, and the snapshot reads again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Sequence
from itertools import compress, pairwise
from typing import Any, TypeVar

from revsync.changes import Change
from revsync.stores._common import changes_from_rows
from revsync.stores._layout import RedisKeys
from revsync.stores._snapshot import SnapshotParts
from revsync.stores.base import ANCHORS, Snapshot

__all__ = ["Call", "Ranged", "read_snapshot"]

Call = Callable[[str, list[str], list[Any]], Coroutine[Any, Any, Any]]
"""Runs one of the store's scripts: name, keys, args."""
Ranged = Callable[[str, int, int], Coroutine[Any, Any, Any]]
"""ZRANGE key (after upto BYSCORE: the members as a list, for a client whose replies
hiredis parses (in C); without it, a script joins them into one string instead."""

T = TypeVar("T")

BUILD_SHARE = 4
"""A read row by row that builds the index takes a quarter of ``chunk`` targets per
run: listing each row costs it about as much again as reading it (measured at 10,000
targets: 128 ms per run against 56 without the index), and a run blocks Redis."""

INDEX_READS = 3
"""Reads of the index a snapshot tries before it reads row by row (which needs no
index): a read is tried again only when another node began rebuilding the index under
it, and the next plan then joins that build instead, so a second read is rare."""

IN_FLIGHT = 2
"""Span reads sent ahead: one that Redis runs while this process parses the last;
more would queue scripts back to back on Redis, blocking its other clients longer."""


async def read_snapshot(
    call: Call, ranged: Ranged | None, keys: RedisKeys, url: str, chunk: int, live: float
) -> Snapshot:
    """Every live row up to the head (see the module docstring), at most ``chunk``
    entries per script run (or ``ranged`` command)."""
    walk_chunk = max(1, chunk // BUILD_SHARE)
    attempt = 0
    while True:
        args = [keys.base, chunk, ANCHORS, uuid.uuid4().hex]
        plan = await call("snapshot_plan", [keys.counter, keys.log], args)
        ready, head, build = int(plan[0]), int(plan[1]), plan[7]
        if not ready or attempt == INDEX_READS:  # the latter: rebuilt under every read
            snapshot = await _walk(call, keys, url, head, walk_chunk, live)
            if not ready:
                await call("index_finish", [keys.counter, keys.log], [keys.base, build])
            return snapshot
        snapshot = await _read_index(call, ranged, keys, url, plan, live)
        # Another node may have emptied the sets to build them again while the spans
        # were read (an older revsync wrote or pruned): what the spans missed then is
        # missed for good, so read again (joining that build) unless nothing did.
        if int(await call("snapshot_check", [keys.counter, keys.log], [keys.base, build])):
            return snapshot
        attempt += 1


async def _read_index(
    call: Call, ranged: Ranged | None, keys: RedisKeys, url: str, plan: list[Any], live: float
) -> Snapshot:
    """The snapshot read from a complete index, in the spans ``plan`` cut."""
    head = int(plan[1])
    parts = SnapshotParts(url)
    revoked, registered = parts.revoked, parts.registered
    for into, key, cuts in (
        (revoked, keys.indexed_revoked, plan[4]),
        (registered, keys.indexed_registered, plan[5]),
    ):
        reads = (_entries(call, ranged, key, span, live) for span in _spans(cuts, head))
        async with contextlib.aclosing(_in_order(reads)) as spans:
            async for found_keys, expiries in spans:
                into[0].extend(found_keys)
                into[1].extend(expiries)
    others: list[Change] = []
    other_reads = (
        call("snapshot_others", [keys.indexed_others], [keys.base, after, upto, live])
        for after, upto in _spans(plan[6], head)
    )
    async with contextlib.aclosing(_in_order(other_reads)) as docs:
        async for doc in docs:
            others += changes_from_rows(json.loads(doc))
    return parts.snapshot(head, others, changes_from_rows(json.loads(plan[3])))


def _spans(cuts: Sequence[Any], head: int) -> list[tuple[int, int]]:
    """(after, upto] seq spans: from 0 through each cut to the head."""
    bounds = [0, *(int(_text(c)) for c in cuts), head]
    return list(pairwise(bounds))


async def _entries(
    call: Call, ranged: Ranged | None, key: str, span: tuple[int, int], live: float
) -> tuple[list[str], list[float]]:
    """The keys and expiries of one span of a set of "<key>\\n<expires_at>" entries,
    those expiring before ``live`` left out."""
    if ranged is None:
        count, text = await call("snapshot_index", [key], [*span, "lines"])
        text = _text(text) if count else ""
    else:  # parsed in C by hiredis: the entries as they are, joined here
        members: list[bytes] = await ranged(key, *span)
        count, text = len(members), b"\n".join(members).decode()
    if not count:
        return [], []
    parts = text.split("\n")
    if len(parts) == 2 * count:
        keys, expiries = parts[0::2], list(map(float, parts[1::2]))
    else:  # a key holding a newline: this span again, as JSON
        _, doc = await call("snapshot_index", [key], [*span, "json"])
        keys, expiries = [], []
        for entry in json.loads(doc):
            found_key, _, expires_at = entry.rpartition("\n")
            keys.append(found_key)
            expiries.append(float(expires_at))
    if expiries and min(expiries) < live:  # expired, not pruned yet
        kept = [expires_at >= live for expires_at in expiries]
        return list(compress(keys, kept)), list(compress(expiries, kept))
    return keys, expiries


async def _in_order(reads: Iterable[Coroutine[Any, Any, T]]) -> AsyncGenerator[T, None]:
    """The results of ``reads``, in order, IN_FLIGHT at a
    time; the ones still running are cancelled if the caller stops early or fails."""
    pending: list[asyncio.Task[T]] = []
    it = iter(reads)
    try:
        for read in it:
            pending.append(asyncio.ensure_future(read))
            if len(pending) >= IN_FLIGHT:
                yield await pending.pop(0)
        while pending:
            yield await pending.pop(0)
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task
        for read in it:  # coroutines never started: closed, not left unawaited
            read.close()


async def _walk(
    call: Call, keys: RedisKeys, url: str, head: int, chunk: int, live: float
) -> Snapshot:
    """Every live row up to ``head``, read target by target along the log (snapshot.lua),
    each listed in the index as it is read.

    Each chunk returns its keys one a line and their expiries comma-separated, split
    in C; a chunk with a key holding a newline is read again with its keys as JSON.
    """
    parts = SnapshotParts(url)
    others: list[Change] = []
    anchors: list[Change] = []
    after, live_text = "0", repr(float(live))
    while True:
        args = [keys.base, after, head, chunk, live_text]
        reply = await call("snapshot", [keys.log], [*args, "lines", "1"])
        columns = _chunk_columns(reply)
        if columns is None:  # a key with a newline: this chunk again, as JSON
            reply = await call("snapshot", [keys.log], [*args, "json", "1"])
            columns = reply[2], reply[3], reply[4], reply[5]
        count, last, rest, tail = reply[0], reply[1], reply[6], reply[7]
        parts.add((columns[0], columns[1]), (columns[2], columns[3]))
        others += changes_from_rows(json.loads(rest))
        if count:
            anchors = [*anchors, *changes_from_rows(json.loads(tail))][-ANCHORS:]
        if count < chunk:
            break
        after = _text(last)
    return parts.snapshot(head, others, anchors)


def _chunk_columns(reply: list[Any]) -> tuple[list[str], bytes, list[str], bytes] | None:
    """A snapshot chunk's keys, their "kind:" taken off, and expiries as sent; None if
    a key holds a newline (the lines do not add up)."""
    revoked = _targets(reply[2], "jti:", int(reply[8]))
    registered = _targets(reply[4], "issued:", int(reply[9]))
    if revoked is None or registered is None:
        return None
    return revoked, reply[3], registered, reply[5]


def _targets(text: bytes, prefix: str, count: int) -> list[str] | None:
    """Keys from targets ("kind:key") one a line, or None if there are not ``count``."""
    if not count:
        return []
    keys = text.decode()[len(prefix) :].replace("\n" + prefix, "\n").split("\n")
    return keys if len(keys) == count else None


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
