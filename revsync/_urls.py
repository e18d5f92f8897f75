"""URLs as they may be shown: in logs, errors, ``status()`` and ``Store.url``."""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

MASK = "***"


def mask_url(url: str) -> str:
    """``url`` with every secret replaced by ``***``: the password of the user part
    (multi-host Sentinel and Cluster URLs included) and the value of any query
    parameter whose name holds "password" (``sentinel_password``, PostgreSQL's
    ``password``, ``ssl_password``...).  Everything else is left as written."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except (ValueError, TypeError, AttributeError):
        return "<unparseable URL>"
    netloc = parts.netloc
    if password:
        netloc = f"{parts.username or ''}:{MASK}@{netloc.rpartition('@')[2]}"
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    masked = SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment)
    return urlunsplit(masked)


def _mask_pair(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    secret = "password" in unquote(name.replace("+", " ")).lower()
    return f"{name}{eq}{MASK}" if secret and eq else pair
