"""This process's TCP connections, read from /proc (Linux): a leak check for the bus's
connections to Redis servers and sentinels."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ESTABLISHED = "01"


def _own_socket_inodes() -> set[str]:
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def connections_to(ports: Iterable[int]) -> int:
    """Established TCP connections of this process to any of ``ports`` on any host."""
    wanted = set(ports)
    inodes = _own_socket_inodes()
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] == ESTABLISHED and remote_port in wanted and fields[9] in inodes:
                count += 1
    return count
