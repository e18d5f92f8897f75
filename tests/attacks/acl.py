"""The least-privilege ACL of docs/security.md, as a helper for the attack tests."""

from __future__ import annotations


def node_acl(channel: str, password: str) -> list[str]:
    """The rule list of docs/security.md for a node on ``channel``."""
    return [
        "on",
        f">{password}",
        "resetchannels",
        f"&{channel}",
        "resetkeys",
        "-@all",
        "+subscribe",
        "+unsubscribe",
        "+publish",
        "+ping",
    ]
