"""GET /healthz (the process is alive), GET /readyz (synced: take traffic), GET /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from quart import Blueprint, Response, current_app, jsonify

from revsync import RevSync

blueprint = Blueprint("health", __name__)


def _revsync() -> RevSync:
    ext: RevSync = current_app.extensions["revsync"]
    return ext


@blueprint.route("/healthz", methods=["GET"])
async def healthz() -> Response:
    return jsonify({"status": "alive", "node_id": _revsync().settings.node_id})


@blueprint.route("/readyz", methods=["GET"])
async def readyz() -> tuple[Response, int]:
    status = _revsync().status()
    body = {
        "ready": status["ready"],
        "node_id": status["node_id"],
        "backfilled": status["backfilled"],
        "stale": status["stale"],
        "seconds_since_sync": status["seconds_since_sync"],
        "max_staleness": status["max_staleness"],
        "fail_mode": status["fail_mode"],
        "last_applied_seq": status["last_applied_seq"],
        "connection": status["connection"],
    }
    if status["ready"]:
        return jsonify(body), 200
    return jsonify({"msg": "not ready", "reason": status["reason"], **body}), 503


@blueprint.route("/metrics", methods=["GET"])
async def metrics() -> Response:
    registry: CollectorRegistry = current_app.extensions["revsync.api"].registry
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
