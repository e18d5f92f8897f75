"""``python -m services.resync [--wait SECONDS] [--new-epoch]``: see ``services.resync``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.resync.job import EXIT_CONFIG, JobError, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.resync",
        description="Check the revsync store and Redis, create the schema, prune expired "
        "entries and verify the sequence (configured by REVSYNC_* environment variables).",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="keep retrying an unreachable store or Redis this long (default 10)",
    )
    parser.add_argument(
        "--new-epoch",
        action="store_true",
        help="after restoring the store from a backup, or failing over to a copy that may "
        "have lost writes: start a new epoch, so every node re-reads the whole store",
    )
    args = parser.parse_args(argv)
    if args.wait < 0:
        parser.error("--wait must be >= 0")
    try:
        report = asyncio.run(run(wait=args.wait, new_epoch=args.new_epoch))
    except JobError as exc:
        print(f"resync: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("resync: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback: one line that says what broke
        print(f"resync: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, ValueError) else 1
    print(
        f"resync: done: store {report.store} at seq {report.head} (epoch {report.epoch}), "
        f"{report.rows} live rows, {report.pruned} pruned"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
