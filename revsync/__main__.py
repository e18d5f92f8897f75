"""``python -m revsync check|migrate|prune|status``: see ``revsync.cli``."""

import sys

from revsync.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="revsync"))
