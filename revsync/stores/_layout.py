"""Where each store keeps what: the SQL tables and the Redis keys, written down once.

The stores, the Lua scripts (through :func:`lua_keys`) and the benchmarks' bulk
loaders (``bench/common.py``) all name tables and keys from here.

SQL (SQLite and PostgreSQL, :func:`sql_schema`):

- ``revsync_meta``      one row: ``seq``, the counter every write bumps
- ``revsync_changes``   one row per target (kind, key): the change that last wrote it
- ``revsync_store``     one row: the store's random ``store_id`` and its ``epoch``
- ``revsync_history``   the history ring: slot -> (first, seq, stamp) of a write
- ``revsync_tokens``    the token registry (REVSYNC_TRACK_TOKENS): one row per jti
- ``revsync_families``  refresh families: ``revoked`` mark, longest member's expiry

Redis (:class:`RedisKeys`), every key under one hash tag, ``{p}`` for ``{prefix}``, so
Cluster keeps them in one slot (the scripts build per-target keys from the prefix,
which Cluster allows for keys of the script's own slot):

- ``{p}:seq``            the counter (INCRBY inside the write script)
- ``{p}:store``          a hash: ``id`` (random, made on first use) and ``epoch``
- ``{p}:hist``           the history ring: slot -> "first last created_at" of each write
- ``{p}:row:<kind>:<key>`` a hash per target: revoked, expires_at, identity, cutoff,
                          seq, and ``json``, the whole row pre-serialised
- ``{p}:log``            sorted set of targets by seq (``since``)
- ``{p}:exp``            sorted set of targets by expires_at (``prune``)
- ``{p}:id:<identity>``  sorted set of one identity's targets by seq (``by_identity``)
- ``{p}:tok:<jti>``, ``{p}:tok-id:<identity>``, ``{p}:tok-fam:<family>``, ``{p}:tok-exp``
                          the token registry: a record hash (doc, the JSON array jti ...
                          metadata; identity, family, rotated "0"/"1", seq) and its
                          indexes by identity, family (by seq) and expiry
- ``{p}:fam:<family>``, ``{p}:fam-exp``
                          a refresh family: a hash with ``revoked`` ("0"/"1", set by
                          ``revoke_family``; a rotation in a revoked family fails), and
                          the families by expiry, their longest-lived member's (prune)
- ``{p}:ix-rev``, ``{p}:ix-reg``, ``{p}:ix-oth``
                          the snapshot's index (``revsync/stores/lua/index.lua``): every
                          row in exactly one of three sorted sets by its seq, revoked
                          jtis and registrations as "<key>\n<expires_at>" (read without
                          looking the row up), every other row as its target
- ``{p}:ix``             a hash: the index's ``seq`` (the head it is current with),
                          ``complete`` ("1" once built), ``since`` (the head at which
                          the build going on began) and ``build`` (a random id of the
                          build that last emptied the sets: a snapshot read from the
                          index checks at its end that it did not change)
"""

from __future__ import annotations

from revsync.changes import Kind

# -- SQL -------------------------------------------------------------------------------

META = "revsync_meta"
HEAD = "SELECT seq FROM revsync_meta WHERE id = 1"
SET_HEAD = "UPDATE revsync_meta SET seq = ? WHERE id = 1"
"""For bulk loaders (the benchmarks): every write bumps the counter instead."""
CHANGES = "revsync_changes"
TOKENS = "revsync_tokens"
FAMILIES = "revsync_families"
TABLES = (META, CHANGES, "revsync_store", "revsync_history", TOKENS, FAMILIES)
"""Every table of the SQL schema: ``connect()`` creates the schema only when one is
missing, and a node's database role needs SELECT, INSERT, UPDATE, DELETE on each
(docs/security.md); no sequences."""

CHANGE_COLUMNS = ("seq", "kind", "key", "revoked", "expires_at", "identity", "cutoff", "created_at")
"""The columns of ``revsync_changes``, in the order of ``Change``'s fields."""
TOKEN_COLUMNS = (
    "jti",
    "identity",
    "type",
    "family",
    "issued_at",
    "expires_at",
    "metadata",
    "rotated",
    "seq",
)
"""The columns of ``revsync_tokens``, in the order of ``tokens.row_for``."""

_TYPES = {
    # SQLite: seq is the rowid (INTEGER PRIMARY KEY), so rows are kept in seq order.
    "sqlite": {
        "small": "INTEGER",
        "int": "INTEGER",
        "big": "INTEGER",
        "real": "REAL",
        "bool": "INTEGER",
        "text": "TEXT",
        "seq": "seq INTEGER PRIMARY KEY",
        "target": "UNIQUE (kind, key)",
        "seq_index": "",
    },
    # PostgreSQL: rows by target, seq unique through an index of its own.
    "postgresql": {
        "small": "smallint",
        "int": "integer",
        "big": "bigint",
        "real": "double precision",
        "bool": "boolean",
        "text": "text",
        "seq": "seq bigint NOT NULL",
        "target": "PRIMARY KEY (kind, key)",
        "seq_index": (
            "CREATE UNIQUE INDEX IF NOT EXISTS revsync_changes_seq ON revsync_changes (seq);"
        ),
    },
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revsync_meta (
    id {small} PRIMARY KEY CHECK (id = 1),
    seq {big} NOT NULL
);
CREATE TABLE IF NOT EXISTS revsync_changes (
    {seq},
    kind {text} NOT NULL CHECK (kind IN ({kinds})),
    key {text} NOT NULL,
    revoked {bool} NOT NULL,
    expires_at {real} NOT NULL,
    identity {text},
    cutoff {real},
    created_at {real} NOT NULL,
    {target}
);
{seq_index}
CREATE INDEX IF NOT EXISTS revsync_changes_identity ON revsync_changes (identity, seq);
CREATE INDEX IF NOT EXISTS revsync_changes_expires_at ON revsync_changes (expires_at);
-- Never behind the rows: a counter re-created beside surviving rows (a partly dropped
-- schema) continues after them instead of handing their numbers out again.  (WHERE
-- true: SQLite needs it to read ON CONFLICT as the upsert clause after a SELECT.)
INSERT INTO revsync_meta (id, seq)
    SELECT 1, COALESCE(MAX(seq), 0) FROM revsync_changes WHERE true
    ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS revsync_tokens (
    jti {text} PRIMARY KEY,
    identity {text} NOT NULL,
    type {text} NOT NULL,
    family {text},
    issued_at {real} NOT NULL,
    expires_at {real} NOT NULL,
    metadata {text} NOT NULL,
    rotated {bool} NOT NULL,
    seq {big} NOT NULL
);
CREATE INDEX IF NOT EXISTS revsync_tokens_identity ON revsync_tokens (identity, seq);
CREATE INDEX IF NOT EXISTS revsync_tokens_family ON revsync_tokens (family);
CREATE INDEX IF NOT EXISTS revsync_tokens_expires_at ON revsync_tokens (expires_at);
CREATE TABLE IF NOT EXISTS revsync_families (
    family {text} PRIMARY KEY,
    revoked {bool} NOT NULL,
    expires_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS revsync_families_expires_at ON revsync_families (expires_at);
-- The store's identity and generation (revsync.stores.base.StorePosition): created
-- once, with a random id, by whichever process creates the schema first.
CREATE TABLE IF NOT EXISTS revsync_store (
    id {small} PRIMARY KEY CHECK (id = 1),
    store_id {text} NOT NULL,
    epoch {big} NOT NULL
);
INSERT INTO revsync_store (id, store_id, epoch) VALUES (1, '{store_id}', 1) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS revsync_history (
    slot {int} PRIMARY KEY,
    first {big} NOT NULL,
    seq {big} NOT NULL,
    stamp {real} NOT NULL
);
"""


def sql_schema(dialect: str, store_id: str) -> str:
    """The statements that create every table and index if missing, for ``dialect``
    ("sqlite" or "postgresql"); a new store gets the id ``store_id`` (hex)."""
    if not store_id.isalnum():
        msg = f"a store id is hex digits, not {store_id!r}"
        raise ValueError(msg)
    kinds = ", ".join(f"'{kind.value}'" for kind in Kind)
    return _SCHEMA.format(**_TYPES[dialect], kinds=kinds, store_id=store_id)


def select(table: str, columns: tuple[str, ...]) -> str:
    """``SELECT columns FROM table``."""
    return f"SELECT {', '.join(columns)} FROM {table}"  # noqa: S608 - names from this module


def insert(table: str, columns: tuple[str, ...], verb: str = "INSERT") -> str:
    """``INSERT INTO table (columns) VALUES (?, ...)``, with ``verb`` for INSERT."""
    marks = ", ".join("?" * len(columns))
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({marks})"


# -- Redis -----------------------------------------------------------------------------

PER_TARGET = {
    "row": "row",
    "identity": "id",
    "token": "tok",
    "identity_tokens": "tok-id",
    "family_tokens": "tok-fam",
    "family": "fam",
}
"""The keys made per target, identity, jti or family: ``{p}:<part>:<name>``."""

INDEX_PARTS = {"state": ":ix", "revoked": ":ix-rev", "registered": ":ix-reg", "others": ":ix-oth"}
"""The snapshot index's keys after the hash tag (the scripts' ``index_key``)."""


class RedisKeys:
    """The keys of one Redis store (see the module docstring)."""

    __slots__ = (
        "base",
        "counter",
        "expiry",
        "family_expiry",
        "history",
        "index",
        "indexed_others",
        "indexed_registered",
        "indexed_revoked",
        "log",
        "store",
        "token_expiry",
    )

    def __init__(self, prefix: str) -> None:
        self.base = "{" + prefix + "}"
        """The hash tag every key starts with; the scripts take it as ARGV[1]."""
        self.counter = f"{self.base}:seq"
        self.store = f"{self.base}:store"
        self.history = f"{self.base}:hist"
        self.log = f"{self.base}:log"
        self.expiry = f"{self.base}:exp"
        self.token_expiry = f"{self.base}:tok-exp"
        self.family_expiry = f"{self.base}:fam-exp"
        self.index = self.base + INDEX_PARTS["state"]
        self.indexed_revoked = self.base + INDEX_PARTS["revoked"]
        self.indexed_registered = self.base + INDEX_PARTS["registered"]
        self.indexed_others = self.base + INDEX_PARTS["others"]

    def of(self, what: str, name: str) -> str:
        """The key of one target, identity, jti or family: ``what`` is a PER_TARGET name
        (the scripts' ``key_of``)."""
        return f"{self.base}:{PER_TARGET[what]}:{name}"

    def row(self, kind: str, key: str) -> str:
        """The hash of one target's row."""
        return self.of("row", member(kind, key))


def member(kind: str, key: str) -> str:
    """How a target is named in the sorted sets and in its row's key."""
    return f"{kind}:{key}"


def lua_keys() -> str:
    """Lua that names keys as :class:`RedisKeys` does, for scripts whose ARGV[1] is the
    base: ``key_of(what, name)`` is ``RedisKeys.of``, ``index_key(what)`` a key of
    INDEX_PARTS, ``member_of(kind, key)`` is :func:`member`."""
    parts = ", ".join(f"{what} = ':{part}:'" for what, part in PER_TARGET.items())
    index = ", ".join(f"{what} = '{part}'" for what, part in INDEX_PARTS.items())
    return (
        f"local KEY_PARTS = {{{parts}}}\n"
        f"local INDEX_PARTS = {{{index}}}\n"
        "local function key_of(what, name) return ARGV[1] .. KEY_PARTS[what] .. name end\n"
        "local function index_key(what) return ARGV[1] .. INDEX_PARTS[what] end\n"
        "local function member_of(kind, key) return kind .. ':' .. key end\n"
    )
