"""The least-privilege ACL of docs/security.md, as a helper for the attack tests."""

from __future__ import annotations


def node_acl(channel: str, password: str) -> list[str]:
    """The rule list of docs/security.md for a node on ``channel`` (one without a hash
    tag: its nodes' ping channels are ``{channel}:ping:<node>``)."""
    return [
        "on",
        f">{password}",
        "resetchannels",
        f"&{channel}",
        f"&{{{channel}}}:ping:*",
        "resetkeys",
        "-@all",
        "+subscribe",
        "+unsubscribe",
        "+publish",
        "+ping",
    ]
