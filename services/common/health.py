"""GET /healthz (the process is alive) and GET /readyz (synced: take traffic)."""

from __future__ import annotations

from collections.abc import Sequence

from quart import Blueprint, Response, jsonify

from services.common.node import current_revsync


def health_blueprint(ready_fields: Sequence[str]) -> Blueprint:
    """The two endpoints; /readyz shows ``ready_fields`` of ``RevSync.status()`` and
    answers 503 with the reason while the node is not ready."""
    blueprint = Blueprint("health", __name__)

    @blueprint.route("/healthz", methods=["GET"])
    async def healthz() -> Response:
        return jsonify({"status": "alive", "node_id": current_revsync().settings.node_id})

    @blueprint.route("/readyz", methods=["GET"])
    async def readyz() -> tuple[Response, int]:
        status = current_revsync().status()
        body = {key: status[key] for key in ready_fields}
        if status["ready"]:
            return jsonify(body), 200
        return jsonify({"msg": "not ready", "reason": status["reason"], **body}), 503

    return blueprint
