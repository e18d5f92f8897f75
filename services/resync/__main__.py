"""``python -m services.resync [--wait SECONDS] [--new-epoch]``: ``revsync check``."""

from __future__ import annotations

import sys

from revsync.cli import main

if __name__ == "__main__":
    sys.exit(main(["check", *sys.argv[1:]], prog="resync"))
