"""Redis topologies: one server, Sentinel, or Cluster, picked by the URL scheme.

- ``redis://host:port/db``, ``rediss://...``, ``unix://...``: one server (redis-py's
  own URL forms).
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?...]``:
  the master Sentinel names ``service``; clients ask the sentinels again on every
  new connection, so they follow the master through a failover.  Query:
  ``db``, ``sentinel_username``, ``sentinel_password``.
- ``redis+cluster://[user:password@]host:port[,host:port...][?...]``: a Redis
  Cluster; the bus uses sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis >= 7.0), so a
  message travels only within the shard that owns the channel's slot.

``rediss+sentinel://`` and ``rediss+cluster://`` use TLS to the data nodes.  The
store's own query parameters (``prefix``, ``min_replicas``) are accepted and left
to the store.  Parsing never connects; errors name the config key and the form.

Every other query parameter is one of redis-py's connection options, as in a
``redis://`` URL and parsed by redis-py's own ``parse_url``: timeouts
(``socket_timeout``, ``socket_connect_timeout``), ``socket_keepalive``,
``socket_read_size``, ``health_check_interval``, ``client_name``, ``max_connections``,
``protocol``, and with TLS only ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_cert_reqs`` (none, optional, required), ``ssl_check_hostname``, ``ssl_ciphers``.
They apply to the data connections (the Sentinel master, every Cluster node, the
bus's subscription) and win over revsync's defaults, as in ``redis://`` URLs; the
connections to the sentinels themselves take ``sentinel_username`` and
``sentinel_password`` and revsync's timeouts.  An unknown parameter is an error
naming it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import ConnectionPool, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from revsync._urls import mask_url

__all__ = [
    "CLUSTER_FORM",
    "SENTINEL_FORM",
    "TOPOLOGY_SCHEMES",
    "FollowingPubSub",
    "Topology",
    "UnsupportedRedis",
    "close_data_client",
    "data_client",
    "hash_tag",
    "is_topology_url",
    "node_kwargs",
    "node_pool",
    "parse_topology_url",
    "sentinel_manager",
]

SENTINEL_FORM: Final = (
    "redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]"
    " (example: redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster)"
)
CLUSTER_FORM: Final = (
    "redis+cluster://[user:password@]host:port[,host:port...]"
    " (example: redis+cluster://10.0.0.1:7000,10.0.0.2:7000)"
)
TOPOLOGY_SCHEMES: Final[dict[str, tuple[Literal["sentinel", "cluster"], bool]]] = {
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
# Query parameters these URLs may carry; the store reads prefix and min_replicas.
_QUERY: Final = {
    "sentinel": {"db", "sentinel_username", "sentinel_password", "prefix", "min_replicas"},
    "cluster": {"prefix", "min_replicas"},
}
REDIS_OPTIONS: Final = frozenset(
    {
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_read_size",
        "health_check_interval",
        "client_name",
        "max_connections",
        "protocol",
    }
)
"""redis-py's connection options a Sentinel or Cluster URL may carry (both clients
take them)."""
TLS_OPTIONS: Final = frozenset(
    {
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "ssl_ciphers",
    }
)
"""redis-py's TLS options, for ``rediss+sentinel://`` and ``rediss+cluster://``."""
_CERT_REQS: Final = ("none", "optional", "required")
SHARDED_PUBSUB_SINCE: Final = (7, 0)
Address = tuple[str, int]


class UnsupportedRedis(RedisConnectionError):
    """The servers lack a feature the topology needs (sharded pub/sub before Redis 7)."""


@dataclass(frozen=True, slots=True)
class Topology:
    """A parsed Sentinel or Cluster URL."""

    kind: Literal["sentinel", "cluster"]
    hosts: tuple[tuple[str, int], ...]
    service: str | None
    db: int
    username: str | None
    password: str | None
    ssl: bool
    sentinel_username: str | None
    sentinel_password: str | None
    query: tuple[tuple[str, str], ...]
    options: tuple[tuple[str, Any], ...] = ()
    """redis-py connection options from the query, parsed (``REDIS_OPTIONS``, ``TLS_OPTIONS``)."""


def hash_tag(key: str) -> str | None:
    """The Redis Cluster hash tag of ``key``: between its first ``{`` and the first
    ``}`` after it, if not empty; None if it has none (the whole key is hashed)."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else None


def is_topology_url(url: object) -> bool:
    """Whether ``url`` uses a Sentinel or Cluster scheme."""
    return isinstance(url, str) and url.partition("://")[0].lower() in TOPOLOGY_SCHEMES


def parse_topology_url(url: str, key: str = "REVSYNC_REDIS_URL") -> Topology:
    """Parse a ``redis+sentinel://`` or ``redis+cluster://`` URL without connecting.

    Raises ValueError naming ``key`` (or "the URL" when it is empty) and the
    expected form.
    """
    scheme, _, rest = url.partition("://")
    kind, ssl = TOPOLOGY_SCHEMES[scheme.lower()]
    form = SENTINEL_FORM if kind == "sentinel" else CLUSTER_FORM

    what = f"{key}={mask_url(url)!r}" if key else "the URL"

    def bad(problem: str) -> ValueError:
        return ValueError(f"{what} {problem}; expected {form}")

    parts = urlsplit(f"x://{rest}")
    if parts.fragment:
        raise bad("has a #fragment")
    userinfo, _, netloc = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, colon, port_text = item.strip().rpartition(":")
        host = host.strip("[]")
        if not colon or not host:
            raise bad(f"has {item.strip()!r} where host:port belongs")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise bad(f"has an invalid port {port_text!r} in {item.strip()!r}")
        hosts.append((host, int(port_text)))
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = _QUERY[kind]
    options = _redis_options([(n, v) for n, v in query if n not in own], ssl, own, bad)
    params = dict(query)
    service: str | None = None
    db_text = params.get("db", "0")
    if kind == "sentinel":
        if not segments:
            raise bad("names no master service (the /service_name part)")
        if len(segments) > 2:
            raise bad("has more than /service_name/db in its path")
        service = unquote(segments[0])
        if len(segments) == 2:
            db_text = segments[1]
    elif segments not in ([], ["0"]):
        raise bad("has a path; a Cluster has only database 0")
    if not db_text.isdigit():
        raise bad(f"has database {db_text!r}, not a number")
    return Topology(
        kind=kind,
        hosts=tuple(hosts),
        service=service,
        db=int(db_text),
        username=username,
        password=password,
        ssl=ssl,
        sentinel_username=params.get("sentinel_username") or None,
        sentinel_password=params.get("sentinel_password") or None,
        query=tuple(query),
        options=tuple(options.items()),
    )


def _redis_options(
    pairs: list[tuple[str, str]],
    ssl: bool,
    own: set[str],
    bad: Callable[[str], ValueError],
) -> dict[str, Any]:
    """redis-py's options among the query ``pairs``, typed by redis-py's ``parse_url``."""
    names = {name for name, _ in pairs}
    unknown = sorted(names - REDIS_OPTIONS - TLS_OPTIONS)
    if unknown:
        raise bad(
            f"has unknown query parameters {unknown} (accepted: revsync's "
            f"{', '.join(sorted(own))}; redis-py's {', '.join(sorted(REDIS_OPTIONS))}; "
            f"with TLS {', '.join(sorted(TLS_OPTIONS))})"
        )
    tls = sorted(names & TLS_OPTIONS)
    if tls and not ssl:
        raise bad(f"sets {tls} without TLS: use the rediss+ scheme")
    try:
        options = dict(parse_url(f"redis://x/?{urlencode(pairs)}"))
    except ValueError as exc:
        raise bad(str(exc)) from None
    for placed in ("host", "port", "db"):
        options.pop(placed, None)
    reqs = options.get("ssl_cert_reqs")
    if reqs is not None and reqs not in _CERT_REQS:
        raise bad(f"has ssl_cert_reqs={reqs!r}, not one of {', '.join(_CERT_REQS)}")
    return options


def node_kwargs(topology: Topology, defaults: dict[str, Any]) -> dict[str, Any]:
    """The data connections' kwargs: revsync's ``defaults``, then the URL's options
    (which win, as in a ``redis://`` URL), credentials and TLS."""
    kwargs: dict[str, Any] = {**defaults, **dict(topology.options)}
    kwargs.update(username=topology.username, password=topology.password)
    if topology.ssl:
        kwargs["ssl"] = True
    return kwargs


SENTINEL_FLOOR: Final = 0.1
"""Least seconds a sentinel is given to connect or answer."""


def sentinel_manager(topology: Topology, timeout: float) -> Sentinel:
    """The sentinels, asked in turn where the master is (redis-py's discovery).

    Each gets an equal share of ``timeout`` and no retry, so that one discovery fits in
    one timeout even when every sentinel but the last refuses or hangs: the commands
    that trigger it (a publish, a subscription) are bounded by that timeout.  With
    redis-py's default (ten retries with backoff per sentinel) a dead first sentinel
    held every discovery for about 4 s (refused) or 30 s (hung), past every bound, so
    no publish got through and the reader hung inside redis-py's reconnect.
    """
    share = max(SENTINEL_FLOOR, timeout / len(topology.hosts))
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": share,
        "socket_connect_timeout": share,
        "retry": Retry(NoBackoff(), 0),
        "username": topology.sentinel_username,
        "password": topology.sentinel_password,
    }
    return Sentinel(  # type: ignore[no-untyped-call]
        list(topology.hosts), sentinel_kwargs=sentinel_kwargs
    )


def data_client(
    url: str,
    *,
    socket_timeout: float | None,
    socket_connect_timeout: float,
    retry: Retry,
    client_name: str | None = None,
    health_check_interval: int = 0,
) -> aioredis.Redis | RedisCluster:
    """A client for commands: one server, the Sentinel master, or a Cluster."""
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "retry": retry,
        "client_name": client_name,
        "health_check_interval": health_check_interval,
    }
    if not is_topology_url(url):
        return aioredis.Redis.from_url(url, **common)
    topology = parse_topology_url(url)
    if topology.kind == "sentinel":
        assert topology.service is not None  # parse_topology_url checked it
        master: aioredis.Redis = sentinel_manager(topology, socket_connect_timeout).master_for(
            topology.service, db=topology.db, **node_kwargs(topology, common)
        )
        return master
    return _cluster_client(topology, common)


async def close_data_client(client: aioredis.Redis | RedisCluster) -> None:
    """Close a client ``data_client`` made; for a Sentinel master, also the connections
    that asked the sentinels where the master is, which the master's client does not
    own and nothing else would close (a stopped node would leave them open)."""
    await client.aclose()
    pool = getattr(client, "connection_pool", None)
    manager: Sentinel | None = getattr(pool, "sentinel_manager", None)
    if manager is not None:
        for sentinel in manager.sentinels:
            await sentinel.aclose()


def _cluster_client(topology: Topology, common: dict[str, Any]) -> RedisCluster:
    nodes = [ClusterNode(host, port) for host, port in topology.hosts]
    return RedisCluster(startup_nodes=nodes, **node_kwargs(topology, common))


@contextlib.contextmanager
def cluster_errors() -> Iterator[None]:
    """RedisClusterException ("cannot be connected") is no RedisError: make it the
    ConnectionError callers already handle, or it would crash the heartbeat task."""
    try:
        yield
    except RedisClusterException as exc:
        raise RedisConnectionError(str(exc)) from exc


def server_version(info: dict[str, Any]) -> tuple[int, ...]:
    text = str(info.get("redis_version", "0"))
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def check_sharded_pubsub(version: tuple[int, ...], where: str) -> None:
    """Raise UnsupportedRedis when a Cluster node is older than Redis 7.0."""
    if version < SHARDED_PUBSUB_SINCE:
        shown = ".".join(map(str, version)) or "unknown"
        msg = (
            f"Redis Cluster node {where} runs Redis {shown}, which has no sharded pub/sub "
            "(SPUBLISH/SSUBSCRIBE, Redis >= 7.0); revsync needs it in Cluster mode and "
            "does not fall back to cluster-wide PUBLISH"
        )
        raise UnsupportedRedis(msg)


def node_pool(topology: Topology, timeout: float, address: Address) -> ConnectionPool:
    """A pool of connections to one data node: no retries, no read timeout (a quiet
    pub/sub channel is normal), the URL's options, credentials and TLS."""
    defaults = {
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    kwargs = node_kwargs(topology, defaults)
    if kwargs.pop("ssl", False):
        kwargs["connection_class"] = SSLConnection
    return ConnectionPool(host=address[0], port=address[1], **kwargs)


class FollowingPubSub(PubSub):
    """A PubSub the bus can tell that its server is no longer the primary.

    After :meth:`move` the next read raises ConnectionError, so the reader drops this
    subscription, resubscribes on the new primary and catches up from the store;
    the connection is closed at once, so a read in progress ends now, not at its
    timeout.
    """

    moved_to: Address | None = None

    @property
    def address(self) -> Address | None:
        """Where this subscription's connection is, once connected."""
        connection: Any = self.connection
        if connection is None or not getattr(connection, "host", None):
            return None
        return str(connection.host), int(connection.port)

    async def move(self, primary: Address) -> None:
        """The primary is now ``primary``: drop this subscription if it is elsewhere."""
        if self.address in (None, primary):
            return
        self.moved_to = primary
        connection: Any = self.connection
        if connection is not None:
            await connection.disconnect(nowait=True)

    async def get_message(
        self,
        ignore_subscribe_messages: bool = False,
        timeout: float | None = 0.0,  # noqa: ASYNC109 - PubSub's own signature
    ) -> dict[str, Any] | None:
        """PubSub's next message; ConnectionError once the primary has moved."""
        self._check_moved()
        message: dict[str, Any] | None = await super().get_message(
            ignore_subscribe_messages, timeout
        )
        self._check_moved()
        return message

    def _check_moved(self) -> None:
        if self.moved_to is not None:
            host, port = self.moved_to
            msg = f"the primary moved to {host}:{port}"
            raise RedisConnectionError(msg)
