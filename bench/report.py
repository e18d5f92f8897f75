"""docs/benchmarks.md and the PNG charts, rebuilt from bench/results/*.json.

Tables and charts come only from the JSON files, so they always show one run's
figures.  bench/NOTES.md (written by hand: causes of missed targets and what would
close them) is copied in under its own heading.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench import capacity

MASS_REVOCATION_SECONDS = 2.0
"""Section 4's target (issue 17): every node refuses the whole batch within this."""

NAMES = (
    "request_cost",
    "propagation",
    "startup",
    "mass_revocation",
    "lookup",
    "rolling_restart",
    "fanout",
    "start_cost",
)
NOTES = Path(__file__).resolve().parent / "NOTES.md"
VARIANTS = {
    "revsync": "(a) revsync api node, revocation check on",
    "no_check": "(b) same app, no revocation check",
    "redis_get": "(c) revsync.jwt + one redis.asyncio GET",
    "qje_seed": "(d) quart-jwt-extended 0.1.0, seed program",
    "revsync_nocache": "(a') revsync api node, verified-token cache off",
}


def load(results: Path, *, quick: bool) -> dict[str, dict[str, Any]]:
    found = {}
    for name in NAMES:
        path = results / (f"{name}.quick.json" if quick else f"{name}.json")
        if path.exists():
            found[name] = json.loads(path.read_text())
    return found


def _met(value: bool | None) -> str:
    return "n/a" if value is None else ("met" if value else "**missed**")


def _ms(x: float) -> str:
    return f"{x:.2f}"


def wrk_version() -> str:
    if not shutil.which("wrk"):
        return "not installed"
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def targets(data: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    rc = data.get("request_cost")
    if rc:
        for pair, r in rc["ratios"].items():
            if r["target"] is None:
                continue
            value = "not run" if r["ratio"] is None else f"{r['ratio']:.2f}"
            rows.append((f"1. req/s {pair}", f">= {r['target']}", value, _met(r["met"])))
    pr = data.get("propagation")
    if pr:
        t = pr["target"]
        rows.append(
            (
                "2. propagation p99, 3 idle nodes",
                f"< {t['p99_ms']:g} ms",
                f"{t['value']:.2f} ms",
                _met(t["met"]),
            )
        )
        if t50 := pr.get("target_p50"):
            rows.append(
                (
                    "2. propagation p50, 3 idle nodes",
                    f"< {t50['p50_ms']:g} ms",
                    f"{t50['value']:.2f} ms",
                    _met(t50["met"]),
                )
            )
        if tl := pr.get("under_load", {}).get("target"):
            rows.append(
                (
                    "2. propagation p99, 3 nodes under load",
                    f"< {tl['p99_ms']:g} ms",
                    f"{tl['value']:.2f} ms",
                    _met(tl["met"]),
                )
            )
    st = data.get("startup")
    if st:
        for store, r in st["stores"].items():
            if "target" not in r:
                rows.append((f"3. start-up, {store}", "", r.get("status", ""), "n/a"))
                continue
            t = r["target"]
            n = f"{t['entries']:,}"
            if "backfill_s" in t:
                rows.append(
                    (
                        f"3. backfill at {n}, {store}",
                        f"< {t['backfill_target_s']:g} s",
                        f"{t['backfill_s']:.2f} s",
                        _met(t["backfill_s"] < t["backfill_target_s"]),
                    )
                )
            rows.append(
                (
                    f"3. ready at {n}, {store}",
                    f"< {t['ready_target_s']:g} s",
                    f"{t['ready_s']:.2f} s",
                    _met(t["ready_s"] < t["ready_target_s"]),
                )
            )
            rows.append(
                (
                    f"3. memory at {n}, {store}",
                    "< 250 MB more",
                    f"+{t['rss_delta_mb']:.0f} MB",
                    _met(t["rss_delta_mb"] < t["rss_target_mb"]),
                )
            )
    mr = data.get("mass_revocation")
    if mr:
        for store, r in mr["stores"].items():
            if "target" in r:
                rows.append(
                    (
                        f"4. revoke_many({mr['tokens']:,}), {store}",
                        f"< {MASS_REVOCATION_SECONDS:g} s",
                        f"{r['all_nodes_s']:.2f} s",
                        _met(r["all_nodes_s"] < MASS_REVOCATION_SECONDS),
                    )
                )
    rr = data.get("rolling_restart")
    if rr:
        for r in rr["rows"]:
            if "missed" not in r:
                rows.append((f"6. rolling restart, {r['store']}", "", r["status"], "n/a"))
                continue
            rows.append(
                (
                    f"6. rolling restart of {r['nodes']} nodes, {r['store']}",
                    "0 missed",
                    f"{r['missed']} of {r['revocations'] * r['nodes']:,} checks",
                    _met(r["missed"] == 0),
                )
            )
    if fo := data.get("fanout"):
        last = fo["stages"][-1]
        rows.append(
            (
                f"7. fan-out to {last['subscribers']} subscribers on one Redis",
                "0 missed",
                f"{sum(r['missed'] for r in fo['stages'])} missed",
                _met(all(r["missed"] == 0 for r in fo["stages"])),
            )
        )
    return rows


def markdown(data: dict[str, dict[str, Any]], charts: dict[str, str], *, quick: bool) -> str:
    out: list[str] = ["# Benchmarks", ""]
    out += [
        "Generated by `make bench` (`python -m bench`) from `bench/results/*.json`; "
        "do not edit by hand (causes of missed targets live in `bench/NOTES.md`).",
        "Every figure below comes from one run on one machine; ratios are of medians "
        "from that run. `make bench-quick` runs the same code with tiny sizes "
        "(CI uses it only to prove the benchmarks still work).",
        "",
    ]
    if quick:
        out += ["**Quick mode: tiny sizes, figures meaningless.**", ""]
    any_result = next(iter(data.values()), None)
    if any_result:
        m = any_result["machine"]
        out += [
            "## Machine and load generator",
            "",
            f"- CPU: {m['cpu']}, {m['cpus']} cores, {m['memory_gb']} GB RAM, {m['os']}, "
            f"Python {m['python']}",
            "- Load average (1/5/15 min) at the end of each benchmark: "
            + "; ".join(f"{n} {d['machine']['load_average']}" for n, d in data.items()),
            f"- HTTP load generator: {wrk_version()} (`wrk -t1 -c16`, keep-alive). Install: "
            "`sudo apt-get install wrk` (Debian/Ubuntu), `brew install wrk` (macOS), or build "
            "from https://github.com/wg/wrk. Without it the bench falls back to a Python "
            "generator, warns loudly, and marks the results `python-fallback`.",
            "- Servers: one hypercorn worker each, on loopback; Redis: a private "
            "redis-server started by the bench; PostgreSQL: database `revsync_bench`.",
            "",
            "| target | wanted | measured | |",
            "|---|---|---|---|",
        ]
        out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets(data)]
        out.append("")
    rc = data.get("request_cost")
    if rc:
        s = rc["summary"]
        base = s["revsync"]["rps"]
        out += [
            "## 1. Request cost",
            "",
            f"Method: {rc['method']}. Load generator: `{rc['load_generator']}`.",
            "",
        ]
        out += [
            "| variant | req/s (median) | p50 ms | p99 ms | revsync ÷ this | errors |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in s.items():
            out.append(
                f"| {VARIANTS.get(name, name)} | {row['rps']:,.0f} | {_ms(row['p50_ms'])} | "
                f"{_ms(row['p99_ms'])} | {base / row['rps']:.2f} | {row['errors']} |"
            )
        for name, note in rc.get("notes", {}).items():
            out.append(f"\n{VARIANTS.get(name, name)}: {note}")
        if rc.get("qje_versions"):
            v = rc["qje_versions"]
            out.append(
                "\n(d) ran in `bench/.venv-qje`: "
                + ", ".join(f"{k} {val}" for k, val in v.items())
                + ". It runs on this Python unchanged."
            )
        out.append("")
        if "request_cost" in charts:
            out += [f"![request cost]({charts['request_cost']})", ""]
    pr = data.get("propagation")
    if pr:
        t3 = pr["three_nodes"]
        out += [
            "## 2. Propagation",
            "",
            f"Method: {pr['method']}.",
            "",
            "| 3 api nodes | samples | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---|---|---|---|---|",
        ]
        loaded = pr.get("under_load", {})
        for label, r in (
            ("subscriber side (idle nodes)", t3["subscriber_side_ms"]),
            ("bus floor: a process that only reads (idle)", t3.get("bus_floor_ms")),
            ("HTTP poll, end to end", t3["http_poll_ms"]),
            ("subscriber side, every node under load", loaded.get("subscriber_side_ms")),
            ("bus floor, under the same load", loaded.get("bus_floor_ms")),
        ):
            if not r or not r.get("count"):
                continue
            out.append(
                f"| {label} | {r['count']} | {_ms(r['p50'])} | {_ms(r['p90'])} | "
                f"{_ms(r['p99'])} | {_ms(r['max'])} |"
            )
        if loaded:
            rps = ", ".join(f"{x:,}" for x in loaded["node_rps"])
            out += [
                "",
                f"Under load: {loaded['revocations']} revocations, one sent every "
                f"{loaded['spacing_ms']:g} ms, while `{loaded['load_generator']}` "
                f"kept {loaded['connections_per_node']} connections busy on each node "
                f"(req/s per node: {rps}); "
                f"{loaded['from_store_first']} (node, revocation) pairs were read from the "
                "store before the bus message arrived.",
            ]
        out += [
            "",
            "| subscriber nodes | samples | p50 ms | p99 ms | max ms |",
            "|---|---|---|---|---|",
        ]
        for r in pr["scaling"]:
            out.append(
                f"| {r['subscribers']} | {r['count']} | {_ms(r['p50'])} | "
                f"{_ms(r['p99'])} | {_ms(r['max'])} |"
            )
        out.append("")
        if "propagation" in charts:
            out += [f"![propagation]({charts['propagation']})", ""]
    st = data.get("startup")
    if st:
        out += [
            "## 3. Start-up backfill",
            "",
            f"Method: {st['method']}.",
            "",
            "| store | live entries | filled in s | backfill s | ready s | RSS MB | Δ RSS MB "
            "| Δ bytes/entry |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for store, r in st["stores"].items():
            if "points" not in r:
                out.append(f"| {store} | {r.get('status')} | | | | | | |")
                continue
            for p in r["points"]:
                bpe = "" if p["bytes_per_entry"] is None else f"{p['bytes_per_entry']:.0f}"
                backfill = f"{p['backfill_s']:.2f}" if "backfill_s" in p else ""
                out.append(
                    f"| {store} | {p['entries']:,} | {p['populate_s']:.1f} | {backfill} | "
                    f"{p['ready_s']:.2f} | {p['rss_mb']:.0f} | {p['rss_delta_mb']:+.0f} | {bpe} |"
                )
        out.append("")
        restarted = {store: r["restarts"] for store, r in st["stores"].items() if "restarts" in r}
        if restarted:
            out += [
                "Restarted at once at the largest size, reading the store or taking up a "
                "checkpoint (`REVSYNC_CHECKPOINT_PATH`):",
                "",
                "| store | nodes | checkpoint | all ready s | slowest backfill s | rows read "
                "| store's work |",
                "|---|---|---|---|---|---|---|",
            ]
            for store, r in restarted.items():
                for key, label in (("without_checkpoint", "no"), ("with_checkpoint", "yes")):
                    x = r[key]
                    out.append(
                        f"| {store} | {x['nodes']} | {label} | {x['all_ready_s']:.2f} | "
                        f"{x['slowest_backfill_s']:.2f} | {x['rows_read']:,} | "
                        f"{x['store_work']:,.0f} {r['store_work_unit']} |"
                    )
            out.append("")
        if "startup" in charts:
            out += [f"![start-up]({charts['startup']})", ""]
    mr = data.get("mass_revocation")
    if mr:
        out += [
            "## 4. Mass revocation",
            "",
            f"Method: {mr['method']}.",
            "",
            "| store | revoke_many returned s | all 3 nodes refuse all s | per node s "
            "| longest Redis block ms |",
            "|---|---|---|---|---|",
        ]
        for store, r in mr["stores"].items():
            if "all_nodes_s" not in r:
                out.append(f"| {store} | {r.get('status')} | | | |")
                continue
            per = ", ".join(f"{x:.2f}" for x in r["per_node_s"])
            out.append(
                f"| {store} | {r['revoke_many_s']:.2f} | {r['all_nodes_s']:.2f} | {per} "
                f"| {_longest_blocks(r)} |"
            )
        out.append("")
    lk = data.get("lookup")
    if lk:
        rs, tl, rg = lk["revocation_set"], lk["tlru_cache"], lk["redis_get"]
        out += [
            "## 5. The lookup",
            "",
            f"Method: {lk['method']}. Loop alone: {lk['loop_ns']:.0f} ns.",
            "",
            "| structure | hit ns | miss ns | load s | bytes/entry |",
            "|---|---|---|---|---|",
            f"| revsync RevocationSet | {rs['hit_ns']:.0f} | {rs['miss_ns']:.0f} | "
            f"{rs['load_s']:.2f} | {rs['bytes_per_entry']:.0f} |",
            f"| cachetools TLRUCache | {tl['hit_ns']:.0f} | {tl['miss_ns']:.0f} | "
            f"{tl['load_s']:.2f} | {tl['bytes_per_entry']:.0f} |",
            f"| Redis GET (redis-py) | {rg['hit_ns']:,.0f} | {rg['miss_ns']:,.0f} | | |",
            f"| Redis GET (redis.asyncio) | {rg['async_hit_ns']:,.0f} | "
            f"{rg['async_miss_ns']:,.0f} | | |",
            "",
        ]
        if "lookup" in charts:
            out += [f"![lookup]({charts['lookup']})", ""]
    if rr := data.get("rolling_restart"):
        out += [
            "## 6. Rolling restart",
            "",
            f"Method: {rr['method']}.",
            "",
            "| store | live | nodes | all restarted s | ready s (median) | store requests "
            "per restart | MB read per restart | revocations | missed |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rr["rows"]:
            if "missed" not in r:
                out.append(f"| {r['store']} | {r['status']} | | | | | | | |")
                continue
            out.append(
                f"| {r['store']} | {r['live']:,} | {r['nodes']} | {r['rolling_s']:.1f} | "
                f"{r['ready_median_s']:.2f} | {r['requests_median']:.0f} | "
                f"{r['mb_from_store_median']:.1f} | {r['revocations']} | {r['missed']} |"
            )
        out.append("")
    out += _fanout_section(data, charts)
    out += _start_cost_section(data)
    if NOTES.exists():
        out += [
            "## Targets missed: causes and what would close them",
            "",
            "(Written by hand in `bench/NOTES.md`, not regenerated.)",
            "",
            NOTES.read_text().strip(),
            "",
        ]
    return "\n".join(out)


def _fanout_section(data: dict[str, dict[str, Any]], charts: dict[str, str]) -> list[str]:
    fo = data.get("fanout")
    if not fo:
        return []
    fit = fo["fit"]["redis_cpu_us"]
    out = [
        "## 7. Fan-out: one Redis, many subscribers",
        "",
        f"Method: {fo['method']}.",
        "",
        "| subscribers | publishes per pipeline | lag p50 ms | lag p99 ms | PING p99 ms "
        "idle / publishing | Redis CPU µs/message | bytes out/message | PUBLISH command µs "
        "| missed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in [*fo["stages"], fo["batched"]]:
        cmd = "" if r["publish_command_us"] is None else f"{r['publish_command_us']:.1f}"
        out.append(
            f"| {r['subscribers']} | {r['batch']} | {_ms(r['lag_ms']['p50'])} | "
            f"{_ms(r['lag_ms']['p99'])} | "
            f"{_ms(r['ping_idle_ms']['p99'])} / {_ms(r['ping_publishing_ms']['p99'])} | "
            f"{r['redis_cpu_us_per_message']:,.0f} | {r['out_bytes_per_message']:,.0f} | "
            f"{cmd} | {r['missed']} |"
        )
    out += [
        "",
        f"Fit: Redis CPU per message = {fit['fixed']:,.0f} µs + {fit['per_subscriber']:.2f} µs "
        "x subscribers. The capacity model built on it is in docs/scale.md.",
        "",
    ]
    if "fanout" in charts:
        out += [f"![fan-out]({charts['fanout']})", ""]
    return out


def _start_cost_section(data: dict[str, dict[str, Any]]) -> list[str]:
    sc = data.get("start_cost")
    if not sc:
        return []
    out = [
        "## 8. Store cost of a node start",
        "",
        f"Method: {sc['method']}.",
        "",
        "| store | live | ready s | requests | MB read | per resync: requests, bytes read |",
        "|---|---|---|---|---|---|",
    ]
    for store, r in sc["stores"].items():
        if "points" not in r:
            out.append(f"| {store} | {r['status']} | | | | |")
            continue
        for p in r["points"]:
            resync = (
                f"{p['resync_requests']:.0f}, {p['resync_bytes_from_store']:,.0f}"
                if "resync_requests" in p
                else ""
            )
            out.append(
                f"| {store} | {p['entries']:,} | {p['ready_s']:.2f} | {p.get('requests', 'n/a')} | "
                f"{p['bytes_from_store'] / 2**20:,.1f} | {resync} |"
            )
    return [*out, ""]


def draw(data: dict[str, dict[str, Any]], results: Path, *, quick: bool) -> dict[str, Path]:
    """One PNG per benchmark that has a picture; {} (with a warning) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("WARNING: matplotlib is not installed (pip install -e '.[bench]'); no charts")
        return {}
    suffix = ".quick.png" if quick else ".png"
    made: dict[str, Path] = {}

    def save(name: str, fig: Any) -> None:
        path = results / f"{name}{suffix}"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made[name] = path

    if rc := data.get("request_cost"):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        names = list(rc["summary"])
        ax.barh([VARIANTS.get(n, n) for n in names], [rc["summary"][n]["rps"] for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("requests/s (median, higher is better)")
        ax.set_title("GET /protected, one hypercorn worker")
        save("request_cost", fig)
    if pr := data.get("propagation"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = [r["subscribers"] for r in pr["scaling"]]
        for key in ("p50", "p99", "max"):
            ax.plot(xs, [r[key] for r in pr["scaling"]], marker="o", label=key)
        ax.axhline(pr["target"]["p99_ms"], color="grey", linestyle="--", label="target p99")
        ax.set_xlabel("subscriber nodes")
        ax.set_ylabel("propagation lag, ms")
        ax.legend()
        save("propagation", fig)
    if st := data.get("startup"):
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        for n, (store, r) in enumerate(st["stores"].items()):
            pts = [p for p in r.get("points", []) if p["entries"]]
            if not pts:
                continue
            xs = [p["entries"] for p in pts]
            color = f"C{n}"
            left.plot(xs, [p["ready_s"] for p in pts], marker="o", color=color, label=store)
            if all("backfill_s" in p for p in pts):
                backfills = [p["backfill_s"] for p in pts]
                left.plot(xs, backfills, marker="x", linestyle=":", color=color)
            right.plot(xs, [p["rss_delta_mb"] for p in pts], marker="o", label=store)
        left.axhline(1.0, color="grey", linestyle=":")  # the backfill target
        ready_label = "s to /readyz 200 (—), backfill (⋯)"
        for ax, label, target in ((left, ready_label, 2), (right, "Δ RSS MB", 250)):
            ax.set_xscale("log")
            ax.set_xlabel("live revocations in the store")
            ax.set_ylabel(label)
            ax.axhline(target, color="grey", linestyle="--")
            ax.legend()
        save("startup", fig)
    if lk := data.get("lookup"):
        fig, ax = plt.subplots(figsize=(7, 3))
        labels = ["RevocationSet", "TLRUCache", "Redis GET", "redis.asyncio GET"]
        hits = [
            lk["revocation_set"]["hit_ns"],
            lk["tlru_cache"]["hit_ns"],
            lk["redis_get"]["hit_ns"],
            lk["redis_get"]["async_hit_ns"],
        ]
        ax.barh(labels, hits)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel(f"ns per lookup (hit), {lk['entries']:,} entries, log scale")
        save("lookup", fig)
    if fo := data.get("fanout"):
        _draw_fanout(plt, fo, save)
    return made


def _draw_fanout(plt: Any, fo: dict[str, Any], save: Any) -> None:
    rows = fo["stages"]
    xs = [r["subscribers"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(xs, [r["lag_ms"]["p50"] for r in rows], marker="o", label="lag p50")
    left.plot(xs, [r["lag_ms"]["p99"] for r in rows], marker="o", label="lag p99")
    left.plot(
        xs, [r["ping_publishing_ms"]["p99"] for r in rows], marker="s", label="Redis PING p99"
    )
    left.set_yscale("log")
    left.set_xlabel("subscriber connections")
    left.set_ylabel("ms (log scale)")
    left.set_title("publish to receive, and Redis latency")
    left.legend()
    fit = fo["fit"]["redis_cpu_us"]
    right.plot(xs, [r["redis_cpu_us_per_message"] for r in rows], "o", label="measured")
    right.plot(
        xs,
        [fit["fixed"] + fit["per_subscriber"] * x for x in xs],
        "--",
        label=f"{fit['fixed']:.0f} + {fit['per_subscriber']:.2f}·N µs",
    )
    right.set_xlabel("subscriber connections")
    right.set_ylabel("Redis CPU µs per message")
    right.set_title("Redis CPU per published revocation")
    right.legend()
    save("fanout", fig)


def build(results: Path, docs: Path, *, quick: bool, scale: Path | None = None) -> Path:
    """docs (the results page) and, given ``scale`` and both results it needs, the
    capacity model in ``scale`` (spliced between its markers, see bench/capacity.py)."""
    data = load(results, quick=quick)
    made = draw(data, results, quick=quick)
    rel = {name: os.path.relpath(path, docs.parent) for name, path in made.items()}
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(markdown(data, rel, quick=quick))
    print(f"wrote {docs}")
    if scale is not None and "fanout" in data and "start_cost" in data:
        chart = os.path.relpath(made["fanout"], scale.parent) if "fanout" in made else None
        capacity.write(scale, capacity.markdown(data["fanout"], data["start_cost"], chart))
    return docs


def _longest_blocks(row: dict[str, Any]) -> str:
    """The longest commands the bench's Redis ran during a mass revocation, by name."""
    longest = row.get("redis_blocks", {}).get("longest_ms")
    if not longest:
        return "none over 1 ms" if "redis_blocks" in row else "not measured"
    return ", ".join(f"{name} {ms:.1f}" for name, ms in list(longest.items())[:3])
