"""URLs as they may be shown: in logs, errors, ``status()`` and ``Store.url``."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

MASK = "***"
_DSN_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
"""``password=...`` in a libpq key=value DSN (quoted or not)."""


def mask_url(url: str) -> str:
    """``url`` with every secret replaced by ``***``: the password of the user part
    (multi-host Sentinel and Cluster URLs included, and passwords holding an unencoded
    ``#``, ``?``, ``/`` or ``@``), the value of any query parameter whose name holds
    "password" (``sentinel_password``, PostgreSQL's ``password``, ``ssl_password``...),
    and ``password=`` in a PostgreSQL key=value DSN.  Everything else is left as written."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _DSN_PASSWORD.sub(rf"\g<1>{MASK}", url)
    # The user part ends at the last '@' before the host, whatever the password holds:
    # masked before any parsing, which an unencoded '#' or '/' in it would derail.
    userinfo, at, after = rest.rpartition("@")
    if at and ":" in userinfo:  # (an '@' in a query string masks too much, never too little)
        user = userinfo.partition(":")[0]
        rest = f"{user}:{MASK}@{after}"
    try:
        parts = urlsplit(f"{scheme}://{rest}")
    except (ValueError, TypeError):
        return f"{scheme}://<unparseable URL>"
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit(SplitResult(parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _mask_pair(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    secret = "password" in unquote(name.replace("+", " ")).lower()
    return f"{name}{eq}{MASK}" if secret and eq else pair
