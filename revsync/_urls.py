"""URLs as they may be shown: in logs, errors, ``status()`` and ``Store.url``."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (multi-host Sentinel and Cluster
    URLs included)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    if not password:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    masked = SplitResult(
        parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment
    )
    return urlunsplit(masked)
