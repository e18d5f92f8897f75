"""redis-py's connection options in Sentinel and Cluster URLs, as in ``redis://``: each
family reaches the connection kwargs of every client revsync builds from the URL (the
store's, the bus's publisher and subscriber, Cluster's sharded subscription), typed by
redis-py's own URL parsing; an unknown or misplaced option fails naming the key.
Nothing connects: the clients are only built and inspected."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import SentinelManagedSSLConnection
from redis.backoff import NoBackoff

from revsync import RevSync
from revsync._bus_connection import BusConnection
from revsync._cluster_bus import ShardedPubSub
from revsync._redis_topology import data_client
from revsync.stores import store_from_url
from tests.engine.conftest import make_app

SENTINEL = "rediss+sentinel://u:pw@10.9.9.1:26379,10.9.9.2:26379/mymaster/1"
CLUSTER = "rediss+cluster://u:pw@10.9.9.1:7000,10.9.9.2:7000"

FAMILIES = {
    "tls files": (
        "ssl_ca_certs=/etc/ssl/ca.pem&ssl_certfile=/etc/ssl/c.pem&ssl_keyfile=/etc/ssl/k.pem"
        "&ssl_cert_reqs=optional&ssl_check_hostname=false&ssl_ciphers=ECDHE-RSA-AES128-GCM-SHA256",
        {
            "ssl_ca_certs": "/etc/ssl/ca.pem",
            "ssl_certfile": "/etc/ssl/c.pem",
            "ssl_keyfile": "/etc/ssl/k.pem",
            "ssl_cert_reqs": "optional",
            "ssl_check_hostname": False,
            "ssl_ciphers": "ECDHE-RSA-AES128-GCM-SHA256",
        },
    ),
    "timeouts": (
        "socket_timeout=2.5&socket_connect_timeout=1.25",
        {"socket_timeout": 2.5, "socket_connect_timeout": 1.25},
    ),
    "connection": (
        "client_name=api-7&health_check_interval=15&socket_keepalive=false&socket_read_size=4096",
        {
            "client_name": "api-7",
            "health_check_interval": 15,
            "socket_keepalive": False,
            "socket_read_size": 4096,
        },
    ),
}


def _clients(url: str) -> list[tuple[str, dict[str, Any], type]]:
    """(which client, its connection kwargs, its connection class) for every client
    revsync builds from ``url``."""
    store = data_client(
        url, socket_timeout=10, socket_connect_timeout=3, retry=Retry(NoBackoff(), 0)
    )
    bus = BusConnection(url, 2.0)
    found = [("store", store), ("publisher", bus.publisher)]
    if bus.subscriber is not None:  # one server or the Sentinel master
        found.append(("subscriber", bus.subscriber))
    else:  # a Cluster: the lookups of the slot's primary (a private attribute)
        assert bus._slots is not None
        found.append(("slot lookup", bus._slots.client(("10.9.9.1", 7000))))
    out = []
    for name, client in found:
        pool = getattr(client, "connection_pool", None)
        if pool is not None:  # one server or the Sentinel master
            out.append((name, dict(pool.connection_kwargs), pool.connection_class))
        else:  # a Cluster: the kwargs every node connection gets
            kwargs = dict(client.connection_kwargs)
            out.append((name, kwargs, kwargs["connection_class"]))
    subscription = bus.subscription()
    if isinstance(subscription, ShardedPubSub):
        pool = subscription.connection_pool
        out.append(("sharded subscription", dict(pool.connection_kwargs), pool.connection_class))
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("base", [SENTINEL, CLUSTER], ids=["sentinel", "cluster"])
def test_each_option_family_reaches_every_client(base: str, family: str) -> None:
    query, expected = FAMILIES[family]
    clients = _clients(f"{base}?{query}")
    assert len(clients) == (4 if "cluster" in base else 3)
    for name, kwargs, connection_class in clients:
        for key, value in expected.items():
            assert kwargs.get(key) == value, f"{name}: {key}={kwargs.get(key)!r}, not {value!r}"
        assert issubclass(connection_class, SSLConnection), name
        assert (kwargs["username"], kwargs["password"]) == ("u", "pw"), name


def test_without_options_revsync_defaults_stay() -> None:
    for name, kwargs, _ in _clients(SENTINEL):
        assert "ssl_ca_certs" not in kwargs, name
        # The publisher has no socket timeout: RedisBus bounds each publish with
        # asyncio.timeout instead, so redis-py writes it without a task in between.
        want = {"store": 10, "publisher": None, "subscriber": None}[name]
        assert kwargs["socket_timeout"] == want, name
    for name, _, connection_class in _clients(SENTINEL.replace("rediss", "redis", 1)):
        assert not issubclass(connection_class, SSLConnection), name


def test_the_sentinel_master_keeps_tls_with_options() -> None:
    master = data_client(
        f"{SENTINEL}?ssl_ca_certs=/ca.pem",
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    assert master.connection_pool.connection_class is SentinelManagedSSLConnection


def test_store_and_bus_urls_accept_options_through_revsync() -> None:
    url = f"{SENTINEL}?ssl_ca_certs=/ca.pem&socket_timeout=4&prefix=p&min_replicas=1"
    node = RevSync(make_app(REVSYNC_REDIS_URL=url, REVSYNC_STORE_URL=url))
    assert node.store.prefix == "p"  # type: ignore[attr-defined]
    store_from_url(f"{CLUSTER}?ssl_cert_reqs=required&prefix=p")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"{SENTINEL}?ssl_ca_cert=/ca.pem", "unknown query parameters ['ssl_ca_cert']"),
        (f"{CLUSTER}?retry_on_timeout=true", "unknown query parameters ['retry_on_timeout']"),
        (
            "redis+sentinel://h:26379/m?ssl_ca_certs=/ca.pem",
            "sets ['ssl_ca_certs'] without TLS",
        ),
        (f"{CLUSTER}?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
        (f"{CLUSTER}?ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe'"),
    ],
)
def test_a_bad_option_fails_naming_it(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match="REVSYNC_REDIS_URL") as info:
        RevSync(make_app(REVSYNC_REDIS_URL=url))
    assert problem in str(info.value)
    assert "pw" not in str(info.value)
    with pytest.raises(ValueError, match="REVSYNC_STORE_URL") as info:
        store_from_url(url)
    assert problem in str(info.value)
