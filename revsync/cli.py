"""The operator's commands: ``revsync check|migrate|prune|status`` (the console script
and ``python -m revsync``, configured by REVSYNC_* environment variables as the nodes
are) and the same under ``quart revsync ...`` (configured by the app's RevSync).

- ``check``: the start-up job, run before the nodes take traffic: Redis and the store
  reachable, the schema created, expired entries pruned, the sequence verified;
- ``migrate``: create the store's schema (the one step that needs DDL rights);
- ``prune``: drop the store's rows whose tokens expired;
- ``status``: read-only: Redis reachable, the store's epoch, head and live rows.

Exit 0 when all is well; otherwise one line on stderr and 2 (bad configuration),
3 (store or Redis unreachable) or 1 (the store's check failed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

import click
from quart.cli import AppGroup, ScriptInfo

from revsync import _job
from revsync._job import EXIT_CHECK_FAILED, EXIT_CONFIG, Report, _JobError

HELP = {
    "check": "Check Redis and the store, create the schema, prune, verify the sequence.",
    "migrate": "Create the store's schema (needs DDL rights; the nodes then need none).",
    "prune": "Drop the store's rows whose tokens expired (plus REVSYNC_LEEWAY).",
    "status": "Show whether Redis is reachable and the store's epoch, head and live rows.",
}
WAIT_HELP = "keep retrying an unreachable store or Redis this long (default 10)"
NEW_EPOCH_HELP = (
    "after restoring the store from a backup, or failing over to a copy that may have "
    "lost writes: start a new epoch, so every node re-reads the whole store"
)


def summary(command: str, report: Report, *, new_epoch: bool = False) -> str:
    """The command's last line on stdout."""
    if command == "check":
        return (
            f"done: store {report.store} at seq {report.head} (epoch {report.epoch}), "
            f"{report.rows} live rows, {report.pruned} pruned"
        )
    if command == "migrate":
        return f"done: schema in place in store {report.store} (epoch {report.epoch})"
    if command == "prune":
        return f"done: {report.pruned} expired entries pruned from store {report.store}"
    return (
        f"store {report.store} (id {report.store_id}) at seq {report.head}, "
        f"epoch {report.epoch}, {report.rows} live rows"
    )


def _execute(prog: str, command: str, run: Any) -> int:
    """Run a job's coroutine; print its summary or its one-line error; the exit code."""
    try:
        report = asyncio.run(run)
    except _JobError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback: one line that says what broke
        print(f"{prog}: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, ValueError) else EXIT_CHECK_FAILED
    print(f"{prog}: {summary(command, report)}", flush=True)
    return 0


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="revsync's operator commands, configured by REVSYNC_* environment "
        "variables (REVSYNC_STORE_URL, REVSYNC_REDIS_URL, ...) as the nodes are.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in HELP.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--wait", type=float, default=10.0, metavar="SECONDS", help=WAIT_HELP)
        if name == "check":
            sub.add_argument("--new-epoch", action="store_true", help=NEW_EPOCH_HELP)
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = "revsync") -> int:
    """The ``revsync`` console script; returns the exit status."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.wait < 0:
        parser.error("--wait must be >= 0")
    try:
        settings = _job.settings_from_env(os.environ)
    except _JobError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.code
    options: dict[str, Any] = {"wait": args.wait}
    if args.command == "check":
        options["new_epoch"] = args.new_epoch
    return _execute(prog, args.command, _job.JOBS[args.command](settings, **options))


def quart_commands() -> click.Group:
    """``quart revsync check|migrate|prune|status``: the same commands, configured by
    the app's RevSync (its ``REVSYNC_*`` config and keyword arguments, its store).
    ``RevSync.init_app`` adds them to ``app.cli``."""
    group = AppGroup("revsync", help="revsync's operator commands (see `revsync --help`).")
    for name, text in HELP.items():
        group.add_command(_quart_command(name, text))
    return group


def _quart_command(name: str, text: str) -> click.Command:
    @click.pass_context
    def command(ctx: click.Context, /, wait: float, **options: Any) -> None:
        # Not with_appcontext: that runs the command inside an event loop already.
        revsync = ctx.ensure_object(ScriptInfo).load_app().extensions.get("revsync")
        if revsync is None:
            click.echo("revsync: the app has no RevSync extension", err=True)
            ctx.exit(EXIT_CONFIG)
        run = _job.JOBS[name](revsync.settings, revsync.store, wait=wait, **options)
        ctx.exit(_execute("revsync", name, run))

    params: list[click.Parameter] = [
        click.Option(["--wait"], type=click.FloatRange(min=0), default=10.0, help=WAIT_HELP)
    ]
    if name == "check":
        params.append(click.Option(["--new-epoch"], is_flag=True, help=NEW_EPOCH_HELP))
    return click.Command(name, callback=command, params=params, help=text)
