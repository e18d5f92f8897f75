"""GET /healthz (the process is alive) and GET /readyz (synced: take traffic).

``app.register_blueprint(health_blueprint())`` on an app with RevSync.  Point a
liveness probe at /healthz and a readiness probe (or a load balancer's health
check) at /readyz.
"""

from __future__ import annotations

from collections.abc import Sequence

from quart import Blueprint, Response, current_app, jsonify

from revsync._extension import RevSync

READY_FIELDS = (
    "ready",
    "node_id",
    "backfilled",
    "stale",
    "seconds_since_sync",
    "max_staleness",
    "fail_mode",
    "last_applied_seq",
    "connection",
)
"""What /readyz shows of ``RevSync.status()`` unless told otherwise."""


def _revsync() -> RevSync:
    ext: RevSync = current_app.extensions["revsync"]
    return ext


def health_blueprint(ready_fields: Sequence[str] = READY_FIELDS) -> Blueprint:
    """The two endpoints; /readyz shows ``ready_fields`` of ``RevSync.status()`` and
    answers 503 with the reason while the node is not ready."""
    blueprint = Blueprint("health", __name__)

    @blueprint.route("/healthz", methods=["GET"])
    async def healthz() -> Response:
        return jsonify({"status": "alive", "node_id": _revsync().settings.node_id})

    @blueprint.route("/readyz", methods=["GET"])
    async def readyz() -> tuple[Response, int]:
        status = _revsync().status()
        body = {key: status[key] for key in ready_fields}
        if status["ready"]:
            return jsonify(body), 200
        return jsonify({"msg": "not ready", "reason": status["reason"], **body}), 503

    return blueprint
