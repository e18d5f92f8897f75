"""Sentinel and Cluster URLs: accepted forms, and malformed ones failing at start-up
with the config key and the expected form in the message."""

from __future__ import annotations

import pytest

from revsync import RevSync
from revsync._redis_topology import (
    UnsupportedRedis,
    check_sharded_pubsub,
    parse_topology_url,
)
from revsync.config import validate_redis_url
from revsync.stores import store_from_url
from tests.engine.conftest import make_app


def test_sentinel_url_parses() -> None:
    t = parse_topology_url(
        "redis+sentinel://u:pw@h1:26379,h2:26380/mymaster/2?sentinel_password=s&prefix=x"
    )
    assert (t.kind, t.hosts, t.service, t.db) == (
        "sentinel",
        (("h1", 26379), ("h2", 26380)),
        "mymaster",
        2,
    )
    assert (t.username, t.password, t.sentinel_password, t.ssl) == ("u", "pw", "s", False)


def test_cluster_url_parses() -> None:
    t = parse_topology_url("rediss+cluster://h1:7000,h2:7001")
    assert (t.kind, t.hosts, t.service, t.db, t.ssl) == (
        "cluster",
        (("h1", 7000), ("h2", 7001)),
        None,
        0,
        True,
    )


@pytest.mark.parametrize(
    ("url", "problem", "form"),
    [
        ("redis+sentinel://h1:26379,h2:26379", "names no master service", "redis+sentinel://"),
        ("redis+sentinel://h1,h2:26379/mymaster", "where host:port belongs", "redis+sentinel://"),
        ("redis+sentinel://h1:0/mymaster", "invalid port", "redis+sentinel://"),
        ("redis+sentinel://h1:26379/mymaster/x", "not a number", "redis+sentinel://"),
        ("redis+sentinel://h1:26379/m?bogus=1", "unknown query parameters", "redis+sentinel://"),
        ("redis+cluster://h1:7000/3", "only database 0", "redis+cluster://"),
        ("redis+cluster://h1:notaport", "invalid port", "redis+cluster://"),
        ("redis+cluster://:7000", "where host:port belongs", "redis+cluster://"),
    ],
)
def test_malformed_urls_name_the_key_and_the_form(url: str, problem: str, form: str) -> None:
    with pytest.raises(ValueError, match="REVSYNC_REDIS_URL") as info:
        RevSync(make_app(REVSYNC_REDIS_URL=url))
    assert problem in str(info.value)
    assert f"expected {form}" in str(info.value)
    with pytest.raises(ValueError, match="REVSYNC_STORE_URL") as info:
        store_from_url(url)
    assert problem in str(info.value)


def test_unknown_scheme_lists_the_new_forms() -> None:
    with pytest.raises(ValueError, match=r"redis\+sentinel://.*redis\+cluster://"):
        validate_redis_url("redis+shard://h:1")


def test_password_is_masked_in_errors() -> None:
    with pytest.raises(ValueError, match="REVSYNC_REDIS_URL") as info:
        validate_redis_url("redis+sentinel://u:secret@h1:26379")
    assert "secret" not in str(info.value)


def test_min_replicas_is_a_number_of_replicas_on_sentinel_and_cluster() -> None:
    with pytest.raises(ValueError, match=r"REVSYNC_STORE_URL.*min_replicas"):
        store_from_url("redis+cluster://h1:7000?min_replicas=one")
    store = store_from_url("redis+sentinel://h1:26379/m?prefix=p&min_replicas=1")
    assert store.url.startswith("redis+sentinel://")
    store = store_from_url("redis+cluster://h1:7000?prefix=p&min_replicas=1")
    assert store.url.startswith("redis+cluster://")


def test_cluster_before_redis_7_is_refused_not_degraded() -> None:
    with pytest.raises(UnsupportedRedis, match=r"Redis 6\.2.*SPUBLISH/SSUBSCRIBE.*>= 7\.0"):
        check_sharded_pubsub((6, 2), "127.0.0.1:7000")
    check_sharded_pubsub((7, 0), "127.0.0.1:7000")
