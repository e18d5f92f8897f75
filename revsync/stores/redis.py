"""RedisStore: revocations in Redis, for deployments that accept Redis persistence.

Every key lives under one hash tag, ``{prefix}:...``, so a later Cluster mode keeps
them in one slot (the scripts build row keys from the prefix, which Cluster allows
for keys of the script's own slot):

- ``{p}:seq``            the counter (INCRBY inside the write script)
- ``{p}:store``          a hash: ``id`` (random, made on first use) and ``epoch``
- ``{p}:hist``           the history ring: slot -> "first last created_at" of each write
- ``{p}:row:<kind>:<key>`` a hash per target: revoked, expires_at, identity, cutoff,
                          seq, and ``json``, the whole row pre-serialised
- ``{p}:log``            sorted set of targets by seq (``since``)
- ``{p}:exp``            sorted set of targets by expires_at (``prune``)
- ``{p}:id:<identity>``  sorted set of one identity's targets by seq (``by_identity``)
- ``{p}:tok:<jti>``, ``{p}:tok-id:<identity>``, ``{p}:tok-fam:<family>``, ``{p}:tok-exp``
                          the token registry (REVSYNC_TRACK_TOKENS): a record hash and
                          its indexes by identity, family (by seq) and expiry; written
                          with its ``Kind.TOKEN`` change in one script (``register``)
- ``{p}:fam:<family>``, ``{p}:fam-exp``
                          a refresh family: a hash with ``revoked`` ("0"/"1", set by
                          ``revoke_family``; a rotation in a revoked family fails), and
                          the families by expiry, their longest-lived member's (prune)

A write is one Lua script, so the counter, the row and the indexes change together
or not at all, and in seq order.  The script mirrors ``common.merge``.  Times travel
as Python ``repr`` strings and are compared in Lua but never re-formatted, so a
float read back is the float written.  Reads return the stored JSON rows joined into
one array, which ``json.loads`` parses in C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from revsync.changes import Change, ChangeRequest, Kind
from revsync.redis_topology import data_client, is_topology_url, parse_topology_url
from revsync.stores.base import HistoryEntry, StoreError, StorePosition
from revsync.stores.common import (
    HISTORY_SLOTS,
    KINDS,
    PAGE,
    check_figures,
    check_request,
    mask_url,
    translate,
)
from revsync.stores.tokens import TokenRecord, request_for

__all__ = ["RedisStore", "from_url"]

_ERRORS = (RedisError, OSError, TimeoutError)
_PRUNE_BATCH = 1_000
_ARGS_PER_REQUEST = 6

# KEYS: counter, log, exp.  ARGV: prefix, now, count, then per request
# kind, key, revoked ("1"/"0"), expires_at, identity ("" = none, else "=" .. identity),
# cutoff ("" = none).  Returns the JSON array of the written changes.
_WRITE_CHANGES = """
local SLOTS = @SLOTS@
local function write_changes(base, now, count, first)
local last = redis.call('INCRBY', KEYS[1], count)
local out = {}
for i = 0, count - 1 do
  local a = first + i * 6
  local kind, key, revoked = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local expires, identity, cutoff = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local member = kind .. ':' .. key
  local row = base .. ':row:' .. member
  local old = redis.call('HMGET', row, 'revoked', 'expires_at', 'identity', 'cutoff')
  if identity == '' then identity = old[3] else identity = string.sub(identity, 2) end
  if cutoff == '' then cutoff = false end
  if old[1] then
    if revoked == '0' then
      expires = old[2]
      if not cutoff then cutoff = old[4] end
    elseif old[1] == '1' then
      if tonumber(old[2]) > tonumber(expires) then expires = old[2] end
      if old[4] and (not cutoff or tonumber(old[4]) > tonumber(cutoff)) then cutoff = old[4] end
    end
    if old[3] and old[3] ~= identity then
      redis.call('ZREM', base .. ':id:' .. old[3], member)
    end
  end
  local seq = string.format('%d', last - count + 1 + i)
  local doc = '[' .. seq .. ',' .. cjson.encode(kind) .. ',' .. cjson.encode(key) .. ','
    .. (revoked == '1' and 'true' or 'false') .. ',' .. expires .. ','
    .. (identity and cjson.encode(identity) or 'null') .. ',' .. (cutoff or 'null') .. ','
    .. now .. ']'
  redis.call('HSET', row, 'seq', seq, 'revoked', revoked, 'expires_at', expires, 'json', doc)
  if identity then
    redis.call('HSET', row, 'identity', identity)
    redis.call('ZADD', base .. ':id:' .. identity, seq, member)
  else
    redis.call('HDEL', row, 'identity')
  end
  if cutoff then
    redis.call('HSET', row, 'cutoff', cutoff)
  else
    redis.call('HDEL', row, 'cutoff')
  end
  redis.call('ZADD', KEYS[2], seq, member)
  redis.call('ZADD', KEYS[3], expires, member)
  out[#out + 1] = doc
end
redis.call('HSET', base .. ':hist', string.format('%d', last % SLOTS),
  string.format('%d', last - count + 1) .. ' ' .. string.format('%d', last) .. ' ' .. now)
return out, last - count + 1
end
""".replace("@SLOTS@", str(HISTORY_SLOTS))

_WRITE = (
    _WRITE_CHANGES
    + """
local out = write_changes(ARGV[1], ARGV[2], tonumber(ARGV[3]), 4)
return '[' .. table.concat(out, ',') .. ']'
"""
)

# The token registry.  Per record ``{p}:tok:<jti>``, a hash: doc (the JSON array jti,
# identity, type, family, issued_at, expires_at, metadata), identity, family, rotated
# ("0"/"1"), seq; indexes ``{p}:tok-id:<identity>`` and ``{p}:tok-fam:<family>`` by
# seq, ``{p}:tok-exp`` by expires_at (prune).
#
# KEYS: counter, log, exp, tok-exp, fam-exp.  ARGV: prefix, now, rotate ("" = none, else
# "=" .. jti), count, then per record the 6 change arguments of _WRITE, then per record
# jti, identity, family ("" = none, else "=" .. family), expires_at, rotated, doc.  Returns the
# JSON array of the written changes, or nil (writing nothing) when the rotated jti is
# unknown, already rotated or of a revoked family: the compare-and-set runs in the same
# script.  Each record's family gets its hash and its expiry extended to the record's.
_REGISTER = (
    _WRITE_CHANGES
    + """
local base, now, rotate, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if rotate ~= '' then
  local row = base .. ':tok:' .. string.sub(rotate, 2)
  local current = redis.call('HMGET', row, 'rotated', 'family')
  if current[1] ~= '0' then return false end
  if current[2] and redis.call('HGET', base .. ':fam:' .. current[2], 'revoked') == '1' then
    return false
  end
  redis.call('HSET', row, 'rotated', '1')
end
if count == 0 then return '[]' end
local out, first = write_changes(base, now, count, 5)
for i = 0, count - 1 do
  local a = 5 + count * 6 + i * 6
  local jti, identity, family = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local expires, rotated, doc = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local row = base .. ':tok:' .. jti
  local old = redis.call('HMGET', row, 'identity', 'family')
  if old[1] then redis.call('ZREM', base .. ':tok-id:' .. old[1], jti) end
  if old[2] then redis.call('ZREM', base .. ':tok-fam:' .. old[2], jti) end
  local seq = string.format('%d', first + i)
  redis.call('DEL', row)
  redis.call('HSET', row, 'doc', doc, 'identity', identity, 'rotated', rotated, 'seq', seq)
  redis.call('ZADD', base .. ':tok-id:' .. identity, seq, jti)
  if family ~= '' then
    family = string.sub(family, 2)
    redis.call('HSET', row, 'family', family)
    redis.call('ZADD', base .. ':tok-fam:' .. family, seq, jti)
    redis.call('HSETNX', base .. ':fam:' .. family, 'revoked', '0')
    local latest = redis.call('ZSCORE', KEYS[5], family)
    if not latest or tonumber(latest) < tonumber(expires) then
      redis.call('ZADD', KEYS[5], expires, family)
    end
  end
  redis.call('ZADD', KEYS[4], expires, jti)
end
return '[' .. table.concat(out, ',') .. ']'
"""
)

# KEYS: an index of records (tok-id or tok-fam).  ARGV: prefix.  Returns the JSON
# array of [doc, rotated, seq] ascending by seq.
_RECORDS = """
local out = {}
for _, jti in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local r = redis.call('HMGET', ARGV[1] .. ':tok:' .. jti, 'doc', 'rotated', 'seq')
  if r[1] then out[#out + 1] = '[' .. r[1] .. ',' .. r[2] .. ',' .. r[3] .. ']' end
end
return '[' .. table.concat(out, ',') .. ']'
"""

# KEYS: tok-fam:<family>, fam:<family>, fam-exp, tok-exp.  ARGV: prefix, family.  Marks
# the family revoked, creating its hash if missing (kept as long as its longest-lived
# member), and returns its records like _RECORDS: one script, so no rotation between.
_REVOKE_FAMILY = (
    """
if redis.call('HSET', KEYS[2], 'revoked', '1') == 1 then
  local latest = 0
  for _, jti in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local expires = redis.call('ZSCORE', KEYS[4], jti)
    if expires and tonumber(expires) > latest then latest = tonumber(expires) end
  end
  redis.call('ZADD', KEYS[3], latest, ARGV[2])
end
"""
    + _RECORDS
)

# KEYS: fam-exp.  ARGV: prefix, before, batch.  Returns how many families it deleted.
_PRUNE_FAMILIES = """
local families = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, family in ipairs(families) do
  redis.call('DEL', ARGV[1] .. ':fam:' .. family)
  redis.call('ZREM', KEYS[1], family)
end
return #families
"""

# KEYS: tok-exp.  ARGV: prefix, before, batch.  Returns how many records it deleted.
_PRUNE_RECORDS = """
local jtis = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, jti in ipairs(jtis) do
  local row = ARGV[1] .. ':tok:' .. jti
  local old = redis.call('HMGET', row, 'identity', 'family')
  if old[1] then redis.call('ZREM', ARGV[1] .. ':tok-id:' .. old[1], jti) end
  if old[2] then redis.call('ZREM', ARGV[1] .. ':tok-fam:' .. old[2], jti) end
  redis.call('DEL', row)
  redis.call('ZREM', KEYS[1], jti)
end
return #jtis
"""

# KEYS: store, counter, hist.  ARGV: a fresh random id, "1" to start a new epoch, the
# ring's size.  The store's identity is created on first use: after Redis lost
# everything, a new id.  Returns [store_id, epoch, head, head's history entry or ""].
_POSITION = """
if redis.call('HSETNX', KEYS[1], 'id', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'epoch', '1')
end
if ARGV[2] == '1' then redis.call('HINCRBY', KEYS[1], 'epoch', 1) end
local found = redis.call('HMGET', KEYS[1], 'id', 'epoch')
local head = redis.call('GET', KEYS[2]) or '0'
local entry = redis.call('HGET', KEYS[3], string.format('%d', tonumber(head) % tonumber(ARGV[3])))
return {found[1], found[2], head, entry or ''}
"""

# KEYS: a sorted set of targets.  ARGV: prefix, min score, limit (-1 = all).
_RANGE = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '+inf', 'LIMIT', 0, ARGV[3])
local out = {}
for _, member in ipairs(members) do
  local doc = redis.call('HGET', ARGV[1] .. ':row:' .. member, 'json')
  if doc then out[#out + 1] = doc end
end
return '[' .. table.concat(out, ',') .. ']'
"""

# KEYS: exp, log.  ARGV: prefix, before, batch.  Returns how many rows it deleted.
_PRUNE = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(members) do
  local row = ARGV[1] .. ':row:' .. member
  local identity = redis.call('HGET', row, 'identity')
  if identity then redis.call('ZREM', ARGV[1] .. ':id:' .. identity, member) end
  redis.call('DEL', row)
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZREM', KEYS[2], member)
end
return #members
"""


def from_url(url: str, **options: Any) -> RedisStore:
    """A store for ``redis://`` or ``rediss://`` URLs; ``?prefix=`` names the key prefix.

    ``redis+sentinel://`` and ``redis+cluster://`` URLs (see revsync.redis_topology) are
    accepted too; with Sentinel, ``?min_replicas=N`` makes every write wait until N
    replicas acknowledged it (WAIT), so a failover cannot lose a returned write.
    """
    if is_topology_url(url):
        topology = parse_topology_url(url, "")
        params = dict(topology.query)
        if "prefix" in params:
            options.setdefault("prefix", params["prefix"])
        if "min_replicas" in params:
            if topology.kind == "cluster" or not params["min_replicas"].isdigit():
                msg = "min_replicas must be a number of replicas, and only with Sentinel"
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


class RedisStore:
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
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            msg = f"the Redis key prefix must be non-empty without braces, not {prefix!r}"
            raise ValueError(msg)
        self._client_url = url
        self.url = mask_url(display_url or url)
        self.prefix = prefix
        self._base = "{" + prefix + "}"
        (
            self._counter,
            self._log,
            self._exp,
            self._token_exp,
            self._family_exp,
            self._identity,
            self._history,
        ) = (
            f"{self._base}:{name}"
            for name in ("seq", "log", "exp", "tok-exp", "fam-exp", "store", "hist")
        )
        self._timeouts = (connect_timeout, socket_timeout)
        self._client_name = client_name
        self._client: aioredis.Redis | RedisCluster | None = None
        self._wait = (min_replicas, int(replica_timeout * 1000))
        self._scripts: dict[str, Any] = {}

    async def connect(self) -> None:
        """Create the client and check that the server answers."""
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
                await client.aclose()
                raise
        self._scripts = {
            name: client.register_script(source)
            for name, source in (
                ("write", _WRITE),
                ("range", _RANGE),
                ("prune", _PRUNE),
                ("register", _REGISTER),
                ("records", _RECORDS),
                ("prune_records", _PRUNE_RECORDS),
                ("position", _POSITION),
                ("revoke_family", _REVOKE_FAMILY),
                ("prune_families", _PRUNE_FAMILIES),
            )
        }
        self._client = client

    async def close(self) -> None:
        """Close the client and its connection pool."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(*_ERRORS):  # a dead connection has nothing to release
                await client.aclose()

    async def _call(self, what: str, script: str, keys: list[str], args: list[Any]) -> Any:
        if self._client is None:
            msg = f"Redis store {self.url} is not connected; call connect() first"
            raise StoreError(msg)
        with translate(_ERRORS, lambda: f"{what} on Redis store {self.url} failed"):
            return await self._scripts[script](keys=keys, args=args)

    async def write(self, request: ChangeRequest) -> Change:
        """Write one change (see ``Store.write``)."""
        return (await self.write_many([request]))[0]

    async def write_many(self, requests: Sequence[ChangeRequest]) -> list[Change]:
        """Write several changes in one script run, numbered consecutively."""
        checked = [check_request(request) for request in requests]
        if not checked:
            return []
        args: list[Any] = [self._base, repr(time.time()), len(checked), *_change_args(checked)]
        keys = [self._counter, self._log, self._exp]
        return _changes(await self._write("write", keys, args))

    async def _write(self, script: str, keys: list[str], args: list[Any]) -> Any:
        if self._wait[0]:
            return await self._write_replicated(script, keys, args)
        return await self._call("write", script, keys, args)

    async def _write_replicated(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """The write script then WAIT on the same connection: returns only once
        ``min_replicas`` replicas hold the write, so a Sentinel failover keeps it."""
        wanted, timeout_ms = self._wait
        if not isinstance(self._client, aioredis.Redis):
            msg = f"Redis store {self.url} is not connected; call connect() first"
            raise StoreError(msg)
        with translate(_ERRORS, lambda: f"write on Redis store {self.url} failed"):
            pipe = self._client.pipeline(transaction=False)
            await self._scripts[script](keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", wanted, timeout_ms)
            doc, acked = await pipe.execute()
        if int(acked) < wanted:
            msg = (
                f"write on Redis store {self.url} reached {acked} of {wanted} replicas "
                f"within {timeout_ms} ms; a failover now could lose it"
            )
            raise StoreError(msg)
        return doc

    async def _range(self, key: str, low: str, limit: int) -> list[Change]:
        return _changes(await self._call("read", "range", [key], [self._base, low, limit]))

    async def get(self, kind: Kind, key: str) -> Change | None:
        """The current row for one target, or None."""
        if self._client is None:
            msg = f"Redis store {self.url} is not connected; call connect() first"
            raise StoreError(msg)
        row = f"{self._base}:row:{Kind(kind).value}:{key}"
        with translate(_ERRORS, lambda: f"read on Redis store {self.url} failed"):
            doc = cast("bytes | None", await self._client.hget(row, "json"))
        return None if doc is None else _changes(b"[" + doc + b"]")[0]

    async def since(self, seq: int, limit: int = 10_000) -> list[Change]:
        """Rows with seq greater than ``seq``, ascending, at most ``limit``."""
        return await self._range(self._log, f"({int(seq)}", int(limit))

    async def head(self) -> int:
        """The highest seq handed out so far."""
        if self._client is None:
            msg = f"Redis store {self.url} is not connected; call connect() first"
            raise StoreError(msg)
        with translate(_ERRORS, lambda: f"read on Redis store {self.url} failed"):
            value = await self._client.get(self._counter)
        return int(value or 0)

    async def position(self) -> StorePosition:
        """The store's identity, epoch and head, read in one script run."""
        return await self._position(new_epoch=False)

    async def new_epoch(self) -> StorePosition:
        """Start a new generation of the store's history (after a restore or failover)."""
        return await self._position(new_epoch=True)

    async def _position(self, *, new_epoch: bool) -> StorePosition:
        keys = [self._identity, self._counter, self._history]
        args = [uuid.uuid4().hex, "1" if new_epoch else "0", HISTORY_SLOTS]
        store_id, epoch, head, entry = await self._call("read", "position", keys, args)
        found = _history_entry(entry)
        stamp = found.stamp if found is not None and found.last == int(head) else None
        return StorePosition(store_id.decode(), int(epoch), int(head), stamp)

    async def history(self, seq: int) -> HistoryEntry | None:
        """The history ring's entry in the slot of ``seq`` (see ``Store.history``)."""
        if self._client is None:
            msg = f"Redis store {self.url} is not connected; call connect() first"
            raise StoreError(msg)
        with translate(_ERRORS, lambda: f"read on Redis store {self.url} failed"):
            entry = await self._client.hget(self._history, str(seq % HISTORY_SLOTS))
        return _history_entry(entry)

    async def prune(self, before: float) -> int:
        """Delete rows whose ``expires_at`` is earlier than ``before``, a batch per script run."""
        total = 0
        args = [self._base, repr(float(before)), _PRUNE_BATCH]
        while True:
            deleted = int(await self._call("prune", "prune", [self._exp, self._log], args))
            total += deleted
            if deleted < _PRUNE_BATCH:
                break
        # Registry records and families: not counted, like the SQL stores.
        for script, key in (
            ("prune_records", self._token_exp),
            ("prune_families", self._family_exp),
        ):
            while int(await self._call("prune", script, [key], args)) == _PRUNE_BATCH:
                pass
        return total

    # -- the token registry (revsync.registry) ------------------------------------------

    async def register(
        self, records: Sequence[TokenRecord], *, rotate: str | None = None
    ) -> list[Change] | None:
        """Record issued tokens and their ``Kind.TOKEN`` changes in one script run.

        With ``rotate``, the script first marks that refresh jti rotated, compare-and-set:
        if it is unknown or already rotated, it writes nothing and this returns None.
        """
        requests = [check_request(request_for(record)) for record in records]
        args: list[Any] = [
            self._base,
            repr(time.time()),
            "" if rotate is None else "=" + rotate,
            len(requests),
            *_change_args(requests),
        ]
        for r in records:
            fields = [r.jti, r.identity, r.type, r.family, r.issued_at, r.expires_at, r.metadata]
            args += (
                r.jti,
                r.identity,
                "" if r.family is None else "=" + r.family,
                repr(float(r.expires_at)),
                "1" if r.rotated else "0",
                json.dumps(fields, sort_keys=True),
            )
        keys = [self._counter, self._log, self._exp, self._token_exp, self._family_exp]
        written = await self._write("register", keys, args)
        return None if written is None else _changes(written)

    async def revoke_family(self, family: str) -> list[TokenRecord]:
        """Mark a refresh family revoked, so no rotation of its tokens succeeds any more,
        and return its records, read in the same script after the mark."""
        keys = [
            f"{self._base}:tok-fam:{family}",
            f"{self._base}:fam:{family}",
            self._family_exp,
            self._token_exp,
        ]
        return _records(await self._write("revoke_family", keys, [self._base, family]))

    async def token(self, jti: str) -> TokenRecord | None:
        """The registry record of one jti, or None."""
        if self._client is None:
            msg = f"Redis store {self.url} is not connected; call connect() first"
            raise StoreError(msg)
        with translate(_ERRORS, lambda: f"read on Redis store {self.url} failed"):
            found = await self._client.hmget(f"{self._base}:tok:{jti}", ["doc", "rotated", "seq"])
        doc, rotated, seq = cast("list[bytes | None]", found)
        if doc is None or rotated is None or seq is None:
            return None
        return _records(b"[[" + doc + b"," + rotated + b"," + seq + b"]]")[0]

    async def tokens(
        self, *, identity: str | None = None, family: str | None = None
    ) -> list[TokenRecord]:
        """Registry records of one identity or one refresh family, ascending by seq."""
        index = f"tok-id:{identity}" if family is None else f"tok-fam:{family}"
        key = f"{self._base}:{index}"
        return _records(await self._call("read", "records", [key], [self._base]))

    async def by_identity(self, identity: str) -> list[Change]:
        """Rows of one identity, ascending by seq."""
        return await self._range(f"{self._base}:id:{identity}", "-inf", -1)

    async def check(self) -> dict[str, int]:
        """Counter not behind any row; every log entry has a row; seqs strictly increase."""
        head = await self.head()
        last, rows = 0, 0
        while page := await self.since(last, PAGE):
            for change in page:
                if change.seq <= last:
                    msg = f"Redis store {self.url}: seq {change.seq} listed after {last}"
                    raise StoreError(msg)
                last = change.seq
            rows += len(page)
        assert self._client is not None  # head() above raised otherwise
        with translate(_ERRORS, lambda: f"check on Redis store {self.url} failed"):
            listed = int(await self._client.zcard(self._log))
            expiring = int(await self._client.zcard(self._exp))
        if not rows == listed == expiring:
            msg = f"Redis store {self.url}: {listed} in the log, {expiring} by expiry, {rows} rows"
            raise StoreError(msg)
        return check_figures(head, rows, last, self.url)


def _change_args(requests: Sequence[ChangeRequest]) -> list[Any]:
    """The 6 script arguments of each (checked) request, flattened."""
    args: list[Any] = []
    for r in requests:
        identity = "" if r.identity is None else "=" + r.identity
        cutoff = "" if r.cutoff is None else repr(r.cutoff)
        args += (
            r.kind.value,
            r.key,
            "1" if r.revoked else "0",
            repr(r.expires_at),
            identity,
            cutoff,
        )
    return args


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


def _changes(doc: bytes) -> list[Change]:
    """Build Changes from a JSON array of rows; the one per-row step on the snapshot path."""
    # tuple.__new__ is what Change._make does, minus a Python-level call per row.
    new, kinds = tuple.__new__, KINDS
    return [
        new(Change, (r[0], kinds[r[1]], r[2], r[3], r[4], r[5], r[6], r[7]))
        for r in json.loads(doc)
    ]
