"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks, then the report.

Full run (``make bench``): writes bench/results/<name>.json and <name>.png and
regenerates docs/benchmarks.md and the capacity model in docs/scale.md.  Quick run
(``make bench-quick``, CI): tiny sizes, writes <name>.quick.json / .quick.png,
bench/results/benchmarks.quick.md and scale.quick.md, so it never replaces a full
run's figures.  ``REVSYNC_BENCH_RESULTS`` moves the results.
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    common,
    fanout,
    lookup,
    mass_revocation,
    propagation,
    report,
    request_cost,
    rolling_restart,
    start_cost,
    startup,
)

BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "request_cost": request_cost.run,
    "propagation": propagation.run,
    "startup": startup.run,
    "mass_revocation": mass_revocation.run,
    "lookup": lookup.run_suite,
    "rolling_restart": rolling_restart.run,
    "fanout": fanout.run,
    "start_cost": start_cost.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the code works")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    parser.add_argument("--docs", type=Path, help="where to write the results page")
    parser.add_argument("--no-report", action="store_true", help="skip docs and charts")
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild docs and charts from the JSON files"
    )
    args = parser.parse_args(argv)
    failed = []
    for name in [] if args.report_only else args.only or BENCHMARKS:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        started = time.monotonic()
        try:
            data = BENCHMARKS[name](quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        data["run_seconds"] = time.monotonic() - started
        common.write_result(name, data, quick=args.quick)
        print(f"   ({data['run_seconds']:.0f} s)", flush=True)
    if not args.no_report:
        default = (
            common.RESULTS / "benchmarks.quick.md"
            if args.quick
            else common.ROOT / "docs" / "benchmarks.md"
        )
        scale = (
            common.RESULTS / "scale.quick.md" if args.quick else common.ROOT / "docs" / "scale.md"
        )
        report.build(common.RESULTS, args.docs or default, quick=args.quick, scale=scale)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
