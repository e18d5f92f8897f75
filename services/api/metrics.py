"""GET /metrics: Prometheus metrics of one node, in a registry of the app's own (not
the global one).

Counters and gauges are read from ``RevSync.stats`` and ``RevSync.status()`` at
scrape time by a custom collector, so the request path pays nothing for them.  The
propagation lag histogram is fed by ``SyncStats.lag_observers``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from quart import Blueprint, Response, current_app

from revsync import RevSync

blueprint = Blueprint("metrics", __name__)

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

COUNTERS = {
    # SyncStats field: (metric name without _total, help)
    "published": ("revsync_revocations_published", "Changes this node published on the bus."),
    "publish_failures": (
        "revsync_publish_failures",
        "Changes durable in the store whose publish failed (other nodes learn on resync).",
    ),
    "applied": ("revsync_revocations_applied", "Changes applied to the local set from the bus."),
    "duplicates": ("revsync_duplicate_events", "Bus events already applied, ignored."),
    "gaps": ("revsync_sequence_gaps", "Sequence gaps noticed on the bus."),
    "resyncs": ("revsync_resyncs", "Catch-ups from the store (start-up, gap, reconnect, timer)."),
    "resync_failures": ("revsync_resync_failures", "Catch-ups from the store that failed."),
    "reconnects": ("revsync_reconnects", "Reconnections to the Redis bus."),
    "heartbeats": ("revsync_heartbeats", "Own heartbeats received back over the bus."),
    "swept": ("revsync_swept_entries", "Expired entries swept from the local set."),
    "store_resets": (
        "revsync_store_resets",
        "Times the store was found to have lost history and was re-read in full.",
    ),
    "queue_overflows": (
        "revsync_queue_overflows",
        "Bus messages dropped because the subscriber queue was full (a catch-up follows).",
    ),
}


class RevSyncCollector(Collector):
    """Reads a RevSync instance's counters and status when scraped."""

    def __init__(self, revsync: RevSync) -> None:
        self.revsync = revsync

    def collect(self) -> Iterator[Metric]:
        stats = self.revsync.stats
        for attr, (name, doc) in COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=getattr(stats, attr))
        rejected = CounterMetricFamily(
            "revsync_events_rejected",
            "Bus messages dropped as invalid or not confirmed by the store, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(stats.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected

        status = self.revsync.status()
        entries = GaugeMetricFamily(
            "revsync_entries", "Entries in the local revocation set.", labels=["kind"]
        )
        for kind, count in status["entries"].items():
            entries.add_metric([kind], count)
        yield entries
        since = status["seconds_since_sync"]
        yield GaugeMetricFamily(
            "revsync_seconds_since_last_sync",
            "Seconds since sync with the store and bus was last confirmed (NaN: never).",
            value=math.nan if since is None else since,
        )
        yield GaugeMetricFamily(
            "revsync_ready",
            "1 when backfilled and not stale (what /readyz says).",
            value=1.0 if status["ready"] else 0.0,
        )
        yield GaugeMetricFamily(
            "revsync_backfilled",
            "1 once the start-up snapshot is applied.",
            value=1.0 if status["backfilled"] else 0.0,
        )
        yield GaugeMetricFamily(
            "revsync_unconfirmed_restrictions",
            "Bus restrictions applied here and not yet confirmed by a store read.",
            value=float(status["unconfirmed_restrictions"]),
        )
        seq = status["last_applied_seq"]
        yield GaugeMetricFamily(
            "revsync_last_applied_seq",
            "Highest store sequence number applied on this node.",
            value=float(seq or 0),
        )


def registry_for(revsync: RevSync) -> CollectorRegistry:
    """A fresh registry exposing ``revsync``'s metrics, with the lag histogram hooked up."""
    registry = CollectorRegistry(auto_describe=True)
    lag = Histogram(
        "revsync_propagation_lag_seconds",
        "Time from a change's publication on one node to its application here.",
        buckets=LAG_BUCKETS,
        registry=registry,
    )
    revsync.stats.lag_observers.append(lag.observe)
    registry.register(RevSyncCollector(revsync))
    return registry


@blueprint.route("/metrics", methods=["GET"])
async def metrics() -> Response:
    registry: CollectorRegistry = current_app.extensions["revsync.api"].registry
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
