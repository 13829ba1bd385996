"""``GET /metrics``: Prometheus text exposition (names in :mod:`offload.metrics`).

Outside open (dev or ``--insecure``) mode it needs an admin API key, sent by
Prometheus as ``authorization: {type: Bearer, credentials: <key>}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from offload import metrics
from offload.api.auth import require
from offload.clock import now

router = APIRouter(tags=["metrics"])


@router.get("/metrics", dependencies=[Depends(require("admin"))],
            response_class=Response)
async def get_metrics(request: Request) -> Response:
    """This process's counters and histograms, and gauges read from the store now."""
    snapshot = await metrics.timed_store(
        "metrics_scrape", metrics.read_store(request.app.state.engine.store, now()))
    return Response(metrics.exposition(snapshot), media_type=CONTENT_TYPE_LATEST)
