"""Durable stores, picked by URL scheme.

Each store module exports ``from_url(url, **options)``; this package imports the
one the scheme names and nothing else, so each driver stays an optional extra.

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (aiosqlite)
- ``postgresql://user:password@host:port/database`` or ``postgres://...`` (asyncpg,
  ``pip install revsync[postgres]``)
- ``redis://host:port/db`` or ``rediss://...`` (redis.asyncio), ``?prefix=`` for keys
- ``redis+sentinel://h1:26379,h2:26379/mymaster`` and ``redis+cluster://h:7000``
  (see ``revsync._redis_topology``)
"""

from __future__ import annotations

import importlib
from typing import Any, cast
from urllib.parse import urlsplit

from revsync._urls import mask_url
from revsync.stores.base import Store, StoreError

__all__ = ["Store", "StoreError", "store_from_url"]

_MODULES = {
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
    "redis": "redis",
    "rediss": "redis",
    "redis+sentinel": "redis",
    "rediss+sentinel": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
}

_FORMS = (
    "sqlite:///relative/path.db or sqlite:////absolute/path.db (a file every node process "
    "can open; not :memory:), postgresql://user:password@host:port/database (or postgres://), "
    "redis://host:port/db or rediss://... (optionally ?prefix=name), "
    "redis+sentinel://host:port[,host:port...]/service_name[/db] (optionally "
    "?prefix=name&min_replicas=1), redis+cluster://host:port[,host:port...] (the same options)"
)

_EXTRAS = {"asyncpg": "postgres"}


def store_from_url(url: str, *, config_key: str = "REVSYNC_STORE_URL", **options: Any) -> Store:
    """Build the store ``url`` names (not yet connected); ``options`` go to its class.

    Raises ValueError naming ``config_key`` when the URL is malformed or its scheme is
    unknown, and ImportError naming the extra to install when the driver is missing.
    """
    shown = mask_url(url) if isinstance(url, str) else repr(url)
    try:
        scheme = urlsplit(url).scheme.lower()
    except (TypeError, ValueError, AttributeError) as exc:
        msg = f"{config_key}={shown!r} is not a URL ({exc}); accepted forms: {_FORMS}"
        raise ValueError(msg) from exc
    name = _MODULES.get(scheme)
    if name is None:
        what = f"scheme {scheme!r} is not supported" if scheme else "it has no scheme"
        msg = f"{config_key}={shown!r}: {what}; accepted forms: {_FORMS}"
        raise ValueError(msg)
    try:
        module = importlib.import_module(f"revsync.stores.{name}")
    except ImportError as exc:
        extra = _EXTRAS.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        msg = (
            f"{config_key}={shown!r} needs the {exc.name} driver, which is not installed: "
            f"pip install revsync[{extra}]"
        )
        raise ImportError(msg, name=exc.name) from exc
    try:
        return cast(Store, module.from_url(url, **options))
    except ValueError as exc:
        msg = f"{config_key}={shown!r} is not a valid store URL: {exc}; accepted forms: {_FORMS}"
        raise ValueError(msg) from exc
