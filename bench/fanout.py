"""7. Fan-out: what one Redis pays to deliver revocations to many subscribers.

One private redis-server; ``WORKERS`` processes holding raw subscriber connections to
one channel (bench/fanout_clients.py: a socket that sent SUBSCRIBE, which is all a
node is to Redis on the bus), grown in stages to 400; a prober process PINGing Redis
every 10 ms (``redis-cli --latency``); and this process publishing revocation events
made with revsync's own encoder (revsync/events.py, signed, so each message has the
size a real one has) at a steady rate.

Each stage has two windows of Redis ``INFO``: an idle one (connections held, PINGs,
no publishes) and a publishing one.  Redis's CPU (``used_cpu_sys + used_cpu_user``)
and output bytes (``total_net_output_bytes``) of the publishing window, less the
idle window's rate over the same time, divided by the messages sent, are what one
revocation costs Redis at that number of subscribers.  Redis's CPU is the figure to
extrapolate from: the subscribers and the prober compete with Redis for this
machine's cores, which stretches the lags and the PING round trips, but not the CPU
time Redis itself spends on a message.
"""

from __future__ import annotations

import functools
import multiprocessing
import statistics
import tempfile
import time
import timeit
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from bench import common, fanout_clients
from revsync.events import Op, RevocationEvent, decode_event, encode_event

WORKERS = 2
"""Subscriber processes (the machine has 2 cores)."""
RATE = 100.0
"""Revocations published per second."""
PROBE_INTERVAL = 0.01
"""Seconds between the prober's PINGs (redis-cli --latency's default)."""
BATCH = 10
"""Publishes per pipeline in the last, batched stage."""
DRAIN = 0.3
"""Seconds after the last publish before the window closes."""
EVENT_KEY = b"k" * 32
"""Events are signed (REVSYNC_EVENT_KEY, as docs/security.md recommends)."""
ORIGIN = "api-7f9c2b64d5-x2k9q-12345"  # a pod-style hostname-pid node id


def revocation(seq: int, sent_at: float) -> RevocationEvent:
    """A revocation shaped like a real one: uuid jti, identity, 15-minute expiry."""
    return RevocationEvent(
        op=Op.REVOKE,
        seq=seq,
        key=str(uuid.uuid4()),
        expires_at=float(int(sent_at) + 900),
        identity="user-0012345",
        cutoff=None,
        origin=ORIGIN,
        sent_at=sent_at,
    )


def message_sizes() -> dict[str, int]:
    """Bytes of a revocation and of a heartbeat ping, signed and not, and of the RESP
    push that carries a signed revocation to one subscriber of the bench's channel."""
    now = time.time()
    rev = revocation(123_456_789, now)
    ping = RevocationEvent.ping(ORIGIN, "0" * 24, now)
    signed = encode_event(rev, EVENT_KEY)
    push = fanout_clients.command(b"message", common.channel().encode(), signed)
    return {
        "delivery_resp": len(push),  # what Redis writes to each subscriber for it
        "revoke_signed": len(signed),
        "revoke_unsigned": len(encode_event(rev, None)),
        "ping_signed": len(encode_event(ping, EVENT_KEY)),
        "ping_unsigned": len(encode_event(ping, None)),
    }


def decode_cost_us() -> dict[str, float]:
    """What each node spends on each message it receives: revsync's decode_event of
    a signed revocation and of a signed ping (a ping of another node is dropped
    right after it)."""
    now = time.time()
    out = {}
    for name, event in (
        ("revoke", revocation(1, now)),
        ("ping", RevocationEvent.ping(ORIGIN, "0" * 24, now)),
    ):
        data = encode_event(event, EVENT_KEY)
        timer = timeit.Timer(functools.partial(decode_event, data, EVENT_KEY))
        loops, _ = timer.autorange()
        out[name] = min(timer.repeat(5, loops)) / loops * 1e6
    return out


def _cpu(info: dict[str, Any], part: str = "") -> float:
    """Redis's CPU seconds so far: ``sys``, ``user`` or (by default) both."""
    parts = (part,) if part else ("sys", "user")
    return sum(float(info[f"used_cpu_{p}"]) for p in parts)


def _publish_usec(info: dict[str, Any]) -> tuple[int, int]:
    stat = info.get("cmdstat_publish", {"calls": 0, "usec": 0})
    return int(stat["calls"]), int(stat["usec"])


class _Window:
    """INFO at both ends of a stretch of time."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def __enter__(self) -> _Window:
        self.start = self.client.info("all")
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = self.client.info("all")
        self.seconds = time.monotonic() - self.t0

    def cpu_s(self, part: str = "") -> float:
        return _cpu(self.end, part) - _cpu(self.start, part)

    def out_bytes(self) -> int:
        return int(self.end["total_net_output_bytes"]) - int(self.start["total_net_output_bytes"])

    def publish_us(self) -> float | None:
        (c0, u0), (c1, u1) = _publish_usec(self.start), _publish_usec(self.end)
        return (u1 - u0) / (c1 - c0) if c1 > c0 else None


def _ask(pipe: Connection, what: str, arg: Any = None, timeout: float = 60) -> Any:
    pipe.send((what, arg))
    if not pipe.poll(timeout):
        raise RuntimeError(f"a bench client did not answer {what!r} in {timeout:g} s")
    return pipe.recv()


class _Probe:
    """The prober's window: PINGs from ``__enter__`` to ``__exit__``."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        self.rtts: list[float] = []

    def __enter__(self) -> _Probe:
        self.pipe.send(("run", None))
        return self

    def __exit__(self, *exc: object) -> None:
        self.rtts = _ask(self.pipe, "stop")


def _publish(client: redis.Redis, channel: str, messages: int, batch: int) -> list[int]:
    """Publish ``messages`` revocations at RATE per second, ``batch`` to a pipeline
    (Redis then handles a batch in one pass of its event loop, as it does when
    many nodes publish at once); the receiver counts PUBLISH answered."""
    receivers: list[int] = []
    next_at = time.monotonic()
    for first in range(1, messages + 1, batch):
        pipe = client.pipeline(transaction=False)
        for seq in range(first, min(first + batch, messages + 1)):
            pipe.publish(channel, encode_event(revocation(seq, time.time()), EVENT_KEY))
        receivers += pipe.execute()
        next_at += batch / RATE
        time.sleep(max(0.0, next_at - time.monotonic()))
    return receivers


def _stage(
    client: redis.Redis,
    channel: str,
    workers: list[Connection],
    probe: Connection,
    size: dict[str, Any],
) -> dict[str, Any]:
    subscribers, messages = size["subscribers"], size["messages"]
    # As long as the publishing window, so that what each window has once (the INFO
    # replies, the wake-ups around them) cancels out as well as what grows with time.
    idle_s = messages / RATE + DRAIN
    numsub = dict(client.pubsub_numsub(channel))[channel.encode()]
    if numsub != subscribers:
        raise RuntimeError(f"Redis counts {numsub} subscribers, expected {subscribers}")
    with _Probe(probe) as idle_probe, _Window(client) as idle:
        time.sleep(idle_s)
    for pipe in workers:
        pipe.send(("listen", None))
    with _Probe(probe) as busy_probe, _Window(client) as busy:
        receivers = _publish(client, channel, messages, size.get("batch", 1))
        time.sleep(DRAIN)
    lags: list[float] = []
    counts: list[int] = []
    for pipe in workers:
        found, per_conn = _ask(pipe, "stop")
        lags += found
        counts += per_conn

    def cpu_us(part: str = "") -> float:
        spent = busy.cpu_s(part) - idle.cpu_s(part) / idle.seconds * busy.seconds
        return float(spent / messages * 1e6)

    out_bytes = busy.out_bytes() - idle.out_bytes() / idle.seconds * busy.seconds
    return {
        "subscribers": subscribers,
        "messages": messages,
        "batch": size.get("batch", 1),
        "publish_receivers_min": min(receivers),
        "missed": sum(messages - c for c in counts),
        "lag_ms": common.percentiles([x * 1000 for x in lags]),
        "ping_idle_ms": common.percentiles([x * 1000 for x in idle_probe.rtts]),
        "ping_publishing_ms": common.percentiles([x * 1000 for x in busy_probe.rtts]),
        "redis_cpu_us_per_message": cpu_us(),
        "redis_sys_us_per_message": cpu_us("sys"),
        "redis_user_us_per_message": cpu_us("user"),
        "redis_idle_cpu_pct": idle.cpu_s() / idle.seconds * 100,
        "publish_command_us": busy.publish_us(),
        "out_bytes_per_message": out_bytes / messages,
        "out_bytes_per_delivery": out_bytes / messages / subscribers,
    }


def _fit(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Least-squares ``key = fixed + per_subscriber * subscribers`` over the stages."""
    xs = [float(r["subscribers"]) for r in rows]
    ys = [float(r[key]) for r in rows]
    slope, intercept = statistics.linear_regression(xs, ys)
    return {"fixed": intercept, "per_subscriber": slope}


def _measure(url: str, plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    channel = common.channel()
    ctx = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    procs = []
    for k in range(WORKERS + 1):
        mine, theirs = ctx.Pipe()
        target = fanout_clients.subscribers if k < WORKERS else fanout_clients.prober
        extra = channel if k < WORKERS else PROBE_INTERVAL
        proc = ctx.Process(target=target, args=(theirs, host, port, extra), daemon=True)
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    *workers, probe = pipes
    held = [0] * WORKERS
    rows = []
    client = redis.Redis(host=host, port=port)
    try:
        for size in plan:
            for k, pipe in enumerate(workers):
                want = size["subscribers"] // WORKERS + (k < size["subscribers"] % WORKERS)
                if want > held[k]:
                    held[k] = _ask(pipe, "add", want - held[k])
            row = _stage(client, channel, workers, probe, size)
            rows.append(row)
            lag = row["lag_ms"]
            print(
                f"  {row['subscribers']:>4} subscribers, batch {row['batch']}: "
                f"lag p50 {lag['p50']:.2f} ms, "
                f"p99 {lag['p99']:.2f} ms; PING p99 {row['ping_publishing_ms']['p99']:.2f} ms; "
                f"Redis {row['redis_cpu_us_per_message']:.0f} µs CPU and "
                f"{row['out_bytes_per_message']:,.0f} B out per message",
                flush=True,
            )
    finally:
        client.close()
        for pipe in pipes:
            pipe.send(("quit", None))
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    return rows


def run(*, quick: bool) -> dict[str, Any]:
    stages = (1, 8) if quick else (1, 12, 48, 100, 200, 400)
    messages = 30 if quick else 600
    plan = [{"subscribers": n, "messages": messages} for n in stages]
    batched = {**plan[-1], "batch": BATCH}
    with (
        tempfile.TemporaryDirectory(prefix="revsync-bench-") as tmp,
        common.private_redis(Path(tmp)) as url,
    ):
        version = redis.Redis.from_url(url).info("server")["redis_version"]
        *rows, batched_row = _measure(url, [*plan, batched])
    return {
        "method": (
            f"one private redis-server {version}; {WORKERS} processes holding raw subscriber "
            "connections to one channel (bench/fanout_clients.py), grown in stages; "
            f"{messages} signed revocation events (revsync.events.encode_event) per stage, "
            f"published at {RATE:g}/s by one client; a separate process PINGs Redis every "
            f"{PROBE_INTERVAL * 1000:g} ms. Lag: receive time in the subscriber process minus "
            "the event's ts. Redis CPU and output bytes per message: INFO used_cpu_sys+user and "
            "total_net_output_bytes over the publishing window, less an idle window's (as long, "
            "same connections and PINGs, no publishes). Subscribers, prober, "
            "publisher and Redis share this machine's cores. Last, the largest stage again with "
            f"the publishes sent {BATCH} at a time in a pipeline (same rate)"
        ),
        "redis_version": version,
        "workers": WORKERS,
        "rate_per_s": RATE,
        "message_bytes": message_sizes(),
        "node_decode_us": decode_cost_us(),
        "stages": rows,
        "batched": batched_row,
        # getrusage splits user/sys by tick sampling: only the sum over stages means much.
        "redis_kernel_share": sum(r["redis_sys_us_per_message"] for r in rows)
        / sum(r["redis_cpu_us_per_message"] for r in rows),
        "fit": {
            "redis_cpu_us": _fit(rows, "redis_cpu_us_per_message"),
            "out_bytes": _fit(rows, "out_bytes_per_message"),
        },
    }
