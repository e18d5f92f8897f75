"""The api node (services/api) plus one bench endpoint: GET /bench/lags.

Every event the node's subscriber applies reports its propagation lag (receipt
minus the publisher's ``sent_at``, both wall clock on one machine) through
``RevSync.stats.lag_observers``; this keeps the raw values, which the Prometheus
histogram of /metrics only has in buckets.  ``?clear=1`` empties the list.
"""

from __future__ import annotations

from quart import Response, jsonify, request

from services.api.app import create_app

app = create_app()
_lags: list[float] = []
app.extensions["revsync"].stats.lag_observers.append(_lags.append)


@app.route("/bench/lags", methods=["GET"])
async def lags() -> Response:
    body = jsonify({"lags": list(_lags)})
    if request.args.get("clear"):
        _lags.clear()
    return body
