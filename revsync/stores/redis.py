"""RedisStore: revocations in Redis, for deployments that accept Redis persistence.

Where each key lives is in ``revsync/stores/_layout.py``.  Every write is one Lua
script (``revsync/stores/lua/``), so the counter, the row and the indexes change
together or not at all, and in seq order.  The write script mirrors
``common.merge``.  Times travel as Python ``repr`` strings and are compared in Lua but
never re-formatted, so a float read back is the float written.  Reads return the
stored JSON rows joined into one array, which ``json.loads`` parses in C.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError
from redis.utils import HIREDIS_AVAILABLE

from revsync._redis_topology import (
    close_data_client,
    data_client,
    is_topology_url,
    parse_topology_url,
)
from revsync._urls import mask_url
from revsync.changes import Change, ChangeRequest, Kind
from revsync.stores._common import (
    HISTORY_SLOTS,
    WriteMany,
    changes_from_rows,
    check_figures,
    translate,
)
from revsync.stores._layout import RedisKeys, lua_keys
from revsync.stores._redis_snapshot import read_snapshot
from revsync.stores._replicated import write_and_wait
from revsync.stores._tokens import TokenRecord, registrations_for
from revsync.stores.base import (
    PAGE_SIZE,
    Committed,
    HistoryEntry,
    PartialWriteError,
    Snapshot,
    StoreError,
    StorePosition,
)

__all__ = ["RedisStore", "from_url", "lua_script"]

_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)
"""What the driver raises; RedisClusterException ("cannot be connected") is no RedisError."""
_PRUNE_BATCH = 1_000
SNAPSHOT_CHUNK = PAGE_SIZE
"""Entries one run of a snapshot script reads (of the index, or targets when it reads
row by row): this bounds how long one run blocks Redis (and the bus on it)."""

WRITE_CHUNK = 1_000
"""Changes written per script run by ``write_many``: a script blocks every other client
of that Redis (the bus too, when it shares the server) while it runs, so a batch of
100,000 is written in parts of a few milliseconds each (bench/mass_revocation.py
measures the longest)."""


class _ChangeArgs(NamedTuple):
    """The script arguments of one change, in this order (rows.lua, ``write_changes``)."""

    kind: str
    key: str
    revoked: str  # "1" or "0"
    expires_at: str
    identity: str  # "" for none, else "=" + identity
    cutoff: str  # "" for none

    @classmethod
    def of(cls, r: ChangeRequest) -> _ChangeArgs:
        identity = "" if r.identity is None else "=" + r.identity
        cutoff = "" if r.cutoff is None else repr(r.cutoff)
        revoked = "1" if r.revoked else "0"
        return cls(r.kind.value, r.key, revoked, repr(r.expires_at), identity, cutoff)


class _RecordArgs(NamedTuple):
    """The script arguments of one registry record, in this order (register.lua)."""

    jti: str
    identity: str
    family: str  # "" for none, else "=" + family
    expires_at: str
    rotated: str  # "1" or "0"
    doc: str  # the JSON array jti, identity, type, family, issued_at, expires_at, metadata

    @classmethod
    def of(cls, r: TokenRecord) -> _RecordArgs:
        fields = [r.jti, r.identity, r.type, r.family, r.issued_at, r.expires_at, r.metadata]
        return cls(
            r.jti,
            r.identity,
            "" if r.family is None else "=" + r.family,
            repr(float(r.expires_at)),
            "1" if r.rotated else "0",
            json.dumps(fields, sort_keys=True),
        )


_SCRIPTS = {  # each script in lua/, with the libraries (lua/ too) it is built on
    "write": ("index", "rows"),
    "register": ("index", "rows", "tokens"),
    "records": ("tokens",),
    "revoke_family": ("tokens",),
    "prune_records": ("tokens",),
    "prune_families": (),
    "position": (),
    "range": (),
    "snapshot": ("index",),
    "snapshot_plan": ("index",),
    "snapshot_check": ("index",),
    "snapshot_index": (),
    "snapshot_others": (),
    "index_finish": ("index",),
    "prune": ("index",),
}


def _lua(name: str) -> str:
    """The text of lua/<name>.lua; an error naming the file if it cannot be used (a
    damaged install must fail when the store is built, not at its first write)."""
    path = f"revsync/stores/lua/{name}.lua"
    try:
        text = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"the Redis store cannot read its script {path}: {exc}; reinstall revsync"
        raise StoreError(msg) from None
    if not text.strip():
        msg = f"the Redis store's script {path} is empty; reinstall revsync"
        raise StoreError(msg)
    return text


def lua_script(body: str, *libraries: str) -> str:
    """A script: the constants and key names every script may use (``layout.lua_keys``),
    the ``libraries`` (lua/<name>.lua), then ``body``."""
    constants = (
        f"local HISTORY_SLOTS = {HISTORY_SLOTS}\n"
        f"local CHANGE_ARGS = {len(_ChangeArgs._fields)}\n"
        f"local RECORD_ARGS = {len(_RecordArgs._fields)}\n"
    )
    return "\n".join([constants + lua_keys(), *map(_lua, libraries), body])


def _script(name: str) -> str:
    body = _lua(name)
    if not re.search(r"^\s*return\b", body, re.MULTILINE):
        msg = (
            f"the Redis store's script revsync/stores/lua/{name}.lua returns nothing "
            f"(damaged?); reinstall revsync"
        )
        raise StoreError(msg)
    return lua_script(body, *_SCRIPTS[name])


_SOURCES = {name: _script(name) for name in _SCRIPTS}
"""Every script's source, read once."""


def from_url(url: str, **options: Any) -> RedisStore:
    """A store for ``redis://`` or ``rediss://`` URLs; ``?prefix=`` names the key prefix.

    ``redis+sentinel://`` and ``redis+cluster://`` URLs (see revsync._redis_topology) are
    accepted too; with either, ``?min_replicas=N`` makes every write wait until N
    replicas acknowledged it (WAIT), so a failover cannot lose a returned write.
    """
    if is_topology_url(url):
        topology = parse_topology_url(url, "")
        params = dict(topology.query)
        if "prefix" in params:
            options.setdefault("prefix", params["prefix"])
        if "min_replicas" in params:
            if not params["min_replicas"].isdigit():
                msg = "min_replicas must be a number of replicas"
                raise ValueError(msg)
            options.setdefault("min_replicas", int(params["min_replicas"]))
        return RedisStore(url, display_url=url, **options)
    parts = urlsplit(url)
    parts.port  # noqa: B018 - raises ValueError for a malformed port
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "prefix"]
    rest = [(name, value) for name, value in query if name != "prefix"]
    if prefixes:
        options.setdefault("prefix", prefixes[-1])
    client_url = urlunsplit(parts._replace(query=urlencode(rest)))
    parse_url(client_url)  # raises ValueError for what redis-py would refuse at connect()
    return RedisStore(client_url, display_url=url, **options)


class RedisStore(WriteMany):
    """A revocation store in Redis (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "revsync",
        connect_timeout: float = 3.0,
        socket_timeout: float = 10.0,
        display_url: str = "",
        client_name: str | None = None,
        min_replicas: int = 0,
        replica_timeout: float = 1.0,
        write_chunk: int = WRITE_CHUNK,
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            msg = f"the Redis key prefix must be non-empty without braces, not {prefix!r}"
            raise ValueError(msg)
        self._client_url = url
        self.url = mask_url(display_url or url)
        self.prefix = prefix
        self._keys = RedisKeys(prefix)
        self._timeouts = (connect_timeout, socket_timeout)
        self._client_name = client_name
        self._client: aioredis.Redis | RedisCluster | None = None
        self._wait = (min_replicas, int(replica_timeout * 1000))
        if write_chunk < 1:
            msg = f"write_chunk must be at least 1, not {write_chunk!r}"
            raise ValueError(msg)
        self._write_chunk = write_chunk
        self._scripts: dict[str, Any] = {}

    async def connect(self) -> None:
        """Create the client and check that the server answers (no schema to check)."""
        if self._client is not None:
            return
        connect_timeout, socket_timeout = self._timeouts
        with translate(_ERRORS, lambda: f"cannot connect to Redis store {self.url}"):
            # No automatic retries: a retried write script could apply twice, and a
            # second seq for a stale change breaks last-write-wins.  The pool opens a
            # fresh connection on the next call after a failure.
            # One server, the Sentinel master or a Cluster, by URL scheme; every key
            # shares the {prefix} hash tag, so the scripts run on one Cluster slot.
            client = data_client(
                self._client_url,
                socket_connect_timeout=connect_timeout,
                socket_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),
                client_name=self._client_name,
            )
            try:
                async with asyncio.timeout(connect_timeout):
                    await client.ping()
            except BaseException:
                await close_data_client(client)
                raise
        scripts = {name: client.register_script(src) for name, src in _SOURCES.items()}
        try:
            for name, script in scripts.items():
                # Compiled now, so a damaged script fails the start-up, naming its file.
                what = f"the Redis store's script revsync/stores/lua/{name}.lua"
                with translate(_ERRORS, lambda: what):  # noqa: B023 - used at once
                    await client.script_load(script.script)
        except BaseException:
            await close_data_client(client)
            raise
        self._scripts = scripts
        self._client = client

    async def create_schema(self) -> None:
        """Redis needs no schema: keys appear with the first write, and the store's
        identity on first use (a Redis that lost everything gets a new one, which is
        how nodes notice).  This makes the identity now; connects for the duration
        when not connected."""
        if self._client is not None:
            await self.position()
            return
        await self.connect()
        try:
            await self.position()
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the client and its connection pool."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(*_ERRORS):  # a dead connection has nothing to release
                await close_data_client(client)

    def _connected(self) -> aioredis.Redis | RedisCluster:
        if self._client is None:
            msg = f"Redis store {self.url} is not connected; call connect() first"
            raise StoreError(msg)
        return self._client

    def _failed(self, what: str) -> contextlib.AbstractContextManager[None]:
        """Driver errors as StoreError "``what`` on Redis store ... failed"."""
        return translate(_ERRORS, lambda: f"{what} on Redis store {self.url} failed")

    async def _call(self, what: str, script: str, keys: list[str], args: list[Any]) -> Any:
        self._connected()
        with self._failed(what):
            return await self._scripts[script](keys=keys, args=args)

    async def _write_checked(
        self, requests: list[ChangeRequest], on_commit: Committed | None = None
    ) -> list[Change]:
        """Write ``requests`` a part of at most ``write_chunk`` at a time, each part one
        script run (see ``Store.write_many``)."""
        written: list[Change] = []
        for start in range(0, len(requests), self._write_chunk):
            try:
                part = await self._write_part(requests[start : start + self._write_chunk])
            except StoreError as exc:
                if not written:
                    raise
                msg = (
                    f"{exc}; {len(written)} of the {len(requests)} changes were written "
                    f"before it (seq {written[0].seq} to {written[-1].seq}, in whole parts)"
                )
                raise PartialWriteError(msg, written) from exc
            written += part
            if on_commit is not None:
                await on_commit(part)
        return written

    async def _write_part(self, requests: list[ChangeRequest]) -> list[Change]:
        """Write ``requests`` in one script run, numbered consecutively."""
        k = self._keys
        now = time.time()
        changes = json.dumps(
            _flat(map(_ChangeArgs.of, requests)), ensure_ascii=False, separators=(",", ":")
        )
        args: list[Any] = [k.base, repr(now), changes]
        doc = await self._run_write("write", [k.counter, k.log, k.expiry, k.history], args)
        first, merged = json.loads(doc)
        # The script returns only the changes merged over a row; every other one is its
        # request, numbered, as common.merge makes it.
        new = tuple.__new__
        written = [new(Change, (first + i, *r, now)) for i, r in enumerate(requests)]
        for change in changes_from_rows(merged):
            written[change.seq - first] = change
        return written

    async def _run_write(self, script: str, keys: list[str], args: list[Any]) -> Any:
        if self._wait[0]:
            return await self._write_replicated(script, keys, args)
        return await self._call("write", script, keys, args)

    async def _write_replicated(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """The write script then WAIT on the same connection: returns only once
        ``min_replicas`` replicas hold the write, so a failover keeps it."""
        wanted, timeout_ms = self._wait
        client = self._connected()
        with self._failed("write"):
            doc, acked = await write_and_wait(client, self._scripts[script], keys, args, self._wait)
        if acked < wanted:
            msg = (
                f"write on Redis store {self.url} reached {acked} of {wanted} replicas "
                f"within {timeout_ms} ms; a failover now could lose it"
            )
            raise StoreError(msg)
        return doc

    async def _range(self, key: str, low: str, limit: int) -> list[Change]:
        doc = await self._call("read", "range", [key], [self._keys.base, low, limit])
        return changes_from_rows(json.loads(doc))

    async def get(self, kind: Kind, key: str) -> Change | None:
        """The current row for one target, or None."""
        client = self._connected()
        with self._failed("read"):
            doc = cast(
                "bytes | None", await client.hget(self._keys.row(Kind(kind).value, key), "json")
            )
        return None if doc is None else changes_from_rows([json.loads(doc)])[0]

    async def since(self, seq: int, limit: int = PAGE_SIZE) -> list[Change]:
        """Rows with seq greater than ``seq``, ascending, at most ``limit``."""
        return await self._range(self._keys.log, f"({int(seq)}", int(limit))

    async def snapshot(self, live_after: float) -> Snapshot:
        """Every live row up to the head (see ``SnapshotReader``), read from the store's
        index in spans of at most SNAPSHOT_CHUNK entries per script run, so that no run
        blocks Redis (and the bus on it) long; or, in a store whose index is not built
        (written by an older revsync), row by row, building it
        (``revsync/stores/_redis_snapshot.py``).  With hiredis installed
        (``revsync[hiredis]``), the spans are read with ZRANGE, parsed in C."""

        async def call(script: str, keys: list[str], args: list[Any]) -> Any:
            return await self._call("read", script, keys, args)

        async def ranged(key: str, after: int, upto: int) -> Any:
            client = self._connected()
            with self._failed("read"):
                return await client.execute_command("ZRANGE", key, f"({after}", upto, "BYSCORE")

        direct = ranged if HIREDIS_AVAILABLE else None
        return await read_snapshot(call, direct, self._keys, self.url, SNAPSHOT_CHUNK, live_after)

    async def head(self) -> int:
        """The highest seq handed out so far."""
        client = self._connected()
        with self._failed("read"):
            value = await client.get(self._keys.counter)
        return int(value or 0)

    async def position(self) -> StorePosition:
        """The store's identity, epoch and head, read in one script run."""
        return await self._position(new_epoch=False)

    async def new_epoch(self) -> StorePosition:
        """Start a new generation of the store's history (after a restore or failover)."""
        return await self._position(new_epoch=True)

    async def _position(self, *, new_epoch: bool) -> StorePosition:
        keys = [self._keys.store, self._keys.counter, self._keys.history]
        args = [uuid.uuid4().hex, "1" if new_epoch else "0"]
        store_id, epoch, head, entry = await self._call("read", "position", keys, args)
        found = _history_entry(entry)
        stamp = found.stamp if found is not None and found.last == int(head) else None
        return StorePosition(store_id.decode(), int(epoch), int(head), stamp)

    async def history(self, seq: int) -> HistoryEntry | None:
        """The history ring's entry in the slot of ``seq`` (see ``Store.history``)."""
        client = self._connected()
        with self._failed("read"):
            entry = await client.hget(self._keys.history, str(seq % HISTORY_SLOTS))
        return _history_entry(entry)

    async def prune(self, before: float) -> int:
        """Delete rows whose ``expires_at`` is earlier than ``before``, a batch per script run."""
        k = self._keys
        total = 0
        args = [k.base, repr(float(before)), _PRUNE_BATCH]
        while True:
            deleted = int(await self._call("prune", "prune", [k.expiry, k.log], args))
            total += deleted
            if deleted < _PRUNE_BATCH:
                break
        # Registry records and families: not counted, like the SQL stores.
        for script, key in (("prune_records", k.token_expiry), ("prune_families", k.family_expiry)):
            while int(await self._call("prune", script, [key], args)) == _PRUNE_BATCH:
                pass
        return total

    # -- the token registry (revsync.registry) ------------------------------------------

    async def register(
        self, records: Sequence[TokenRecord], *, rotate: str | None = None
    ) -> list[Change] | None:
        """Record issued tokens and their ``Kind.ISSUED`` changes in one script run.

        With ``rotate``, the script first marks that refresh jti rotated, compare-and-set:
        if it is unknown or already rotated, it writes nothing and this returns None.
        """
        requests = registrations_for(records)
        k = self._keys
        args: list[Any] = [
            k.base,
            repr(time.time()),
            "" if rotate is None else "=" + rotate,
            len(requests),
            *_flat(map(_ChangeArgs.of, requests)),
            *_flat(map(_RecordArgs.of, records)),
        ]
        keys = [k.counter, k.log, k.expiry, k.history, k.token_expiry, k.family_expiry]
        written = await self._run_write("register", keys, args)
        return None if written is None else changes_from_rows(json.loads(written))

    async def revoke_family(self, family: str) -> list[TokenRecord]:
        """Mark a refresh family revoked, so no rotation of its tokens succeeds any more,
        and return its records, read in the same script after the mark."""
        k = self._keys
        keys = [
            k.of("family_tokens", family),
            k.of("family", family),
            k.family_expiry,
            k.token_expiry,
        ]
        return _records(await self._run_write("revoke_family", keys, [k.base, family]))

    async def token(self, jti: str) -> TokenRecord | None:
        """The registry record of one jti, or None."""
        client = self._connected()
        with self._failed("read"):
            found = await client.hmget(self._keys.of("token", jti), ["doc", "rotated", "seq"])
        doc, rotated, seq = cast("list[bytes | None]", found)
        if doc is None or rotated is None or seq is None:
            return None
        return _records(b"[[" + doc + b"," + rotated + b"," + seq + b"]]")[0]

    async def tokens(
        self, *, identity: str | None = None, family: str | None = None
    ) -> list[TokenRecord]:
        """Registry records of one identity or one refresh family, ascending by seq."""
        index = ("identity_tokens", identity) if family is None else ("family_tokens", family)
        key = self._keys.of(index[0], str(index[1]))
        return _records(await self._call("read", "records", [key], [self._keys.base]))

    async def by_identity(self, identity: str) -> list[Change]:
        """Rows of one identity, ascending by seq."""
        return await self._range(self._keys.of("identity", identity), "-inf", -1)

    async def check(self) -> dict[str, int]:
        """Counter not behind any row; every log entry has a row; seqs strictly increase."""
        head = await self.head()
        last, rows = 0, 0
        while page := await self.since(last, PAGE_SIZE):
            for change in page:
                if change.seq <= last:
                    msg = f"Redis store {self.url}: seq {change.seq} listed after {last}"
                    raise StoreError(msg)
                last = change.seq
            rows += len(page)
        client = self._connected()
        with self._failed("check"):
            listed = int(await client.zcard(self._keys.log))
            expiring = int(await client.zcard(self._keys.expiry))
        if not rows == listed == expiring:
            msg = f"Redis store {self.url}: {listed} in the log, {expiring} by expiry, {rows} rows"
            raise StoreError(msg)
        return check_figures(head, rows, last, self.url)


def _flat(args: Iterable[tuple[str, ...]]) -> list[str]:
    return list(itertools.chain.from_iterable(args))


def _history_entry(entry: bytes | str | None) -> HistoryEntry | None:
    """A history ring entry, stored as "first last stamp"."""
    if not entry:
        return None
    first, last, stamp = (entry.decode() if isinstance(entry, bytes) else entry).split(" ")
    return HistoryEntry(int(first), int(last), float(stamp))


def _records(doc: bytes) -> list[TokenRecord]:
    """Records from a JSON array of [[jti, ..., metadata], rotated, seq]."""
    return [
        TokenRecord(d[0], d[1], d[2], d[3], float(d[4]), float(d[5]), d[6], bool(rotated), seq)
        for d, rotated, seq in json.loads(doc)
    ]
