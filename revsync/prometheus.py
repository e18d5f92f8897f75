"""Prometheus metrics of one node: ``app.register_blueprint(metrics_blueprint(revsync))``
serves them at GET /metrics, from a registry of the app's own (not the global one).

Needs the ``prometheus`` extra (``pip install 'revsync[prometheus]'``).  Counters and
gauges are read from ``RevSync.stats`` and ``RevSync.status()`` at scrape time by a
custom collector, so the request path pays nothing for them; the two histograms are
fed by ``SyncStats.lag_observers`` and ``SyncStats.write_observers``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Histogram,
        generate_latest,
    )
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on what is installed
    msg = (
        "revsync.prometheus needs prometheus-client, which the 'prometheus' extra "
        "installs: pip install 'revsync[prometheus]'"
    )
    raise ImportError(msg, name=exc.name) from exc

from quart import Blueprint, Response

from revsync._extension import RevSync

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

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
    "foreign_pings": (
        "revsync_foreign_pings",
        "Pings that were not this node's awaited ones (older nodes', replays), ignored.",
    ),
    "swept": ("revsync_swept_entries", "Expired entries swept from the local set."),
    "store_pruned": (
        "revsync_store_pruned_rows",
        "Expired rows this node's periodic prune removed from the store.",
    ),
    "store_write_failures": (
        "revsync_store_write_failures",
        "Writes (revocations, token registrations) the store refused or failed.",
    ),
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
            "revsync_last_sync_timestamp_seconds",
            "Unix time sync with the store and bus was last confirmed (0: never).",
            value=0.0 if since is None else time.time() - since,
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
        backfill = status["backfill"]
        if backfill["seconds"] is not None:
            yield GaugeMetricFamily(
                "revsync_backfill_seconds",
                "How long the start-up backfill took (snapshot and catch-up, to backfilled).",
                value=backfill["seconds"],
            )
            yield GaugeMetricFamily(
                "revsync_backfill_rows",
                "Rows the start-up backfill read from the store (a checkpoint's delta only).",
                value=float(backfill["rows"] or 0),
            )
        yield GaugeMetricFamily(
            "revsync_store_epoch",
            "Generation of the store's history this node follows (0: not read yet).",
            value=float(status["store_epoch"] or 0),
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
    """A fresh registry exposing ``revsync``'s metrics, with the histograms hooked up."""
    registry = CollectorRegistry(auto_describe=True)
    lag = Histogram(
        "revsync_propagation_lag_seconds",
        "Time from a change's publication on one node to its application here "
        "(for a revoked token: until this node refused it).",
        buckets=LAG_BUCKETS,
        registry=registry,
    )
    writes = Histogram(
        "revsync_store_write_duration_seconds",
        "Time a write to the store took (failed writes included).",
        buckets=WRITE_BUCKETS,
        registry=registry,
    )
    revsync.stats.lag_observers.append(lag.observe)
    revsync.stats.write_observers.append(writes.observe)
    registry.register(RevSyncCollector(revsync))
    return registry


def metrics_blueprint(revsync: RevSync, registry: CollectorRegistry | None = None) -> Blueprint:
    """GET /metrics for ``revsync`` (from ``registry_for(revsync)`` unless given one)."""
    served = registry_for(revsync) if registry is None else registry
    blueprint = Blueprint("revsync_metrics", __name__)

    @blueprint.route("/metrics", methods=["GET"])
    async def metrics() -> Response:
        return Response(generate_latest(served), content_type=CONTENT_TYPE_LATEST)

    return blueprint
