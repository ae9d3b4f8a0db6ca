"""Liveness, readiness and Prometheus metrics.

Every handler is async and cheap: it answers on the event loop, never queued in the thread pool
behind inference (a liveness probe that waits for slow batches gets the pod killed)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.http.deps import FollowerDep, MetricsDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict:
    """The process answers (says nothing about models or the registry)."""
    return {"status": "live"}


@router.get("/health/ready", responses={503: {"description": "some configured model is not loaded"}})
async def ready(store: StoreDep, follower: FollowerDep) -> JSONResponse:
    """Ready only when every configured model is loaded and warmed up and the registry is being
    followed; registry outages alone do not make a loaded server unready (the watcher keeps
    trying), but a follower that stopped does: this replica would never see an alias move."""
    stopped = follower.stopped_reason
    loaded = {n: store.get(n) for n in store.names}  # one look: a withdrawal may land meanwhile
    if all(loaded.values()) and stopped is None:
        return JSONResponse({"status": "ready", "versions": {n: m.version for n, m in loaded.items()}})
    return JSONResponse(
        {
            "status": "not ready",
            "waiting": store.not_ready_reasons(),
            "following": stopped or "yes",
            "last_registry_error": follower.last_registry_error,
        },
        status_code=503,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics: requests by route/status/model/version, latency histogram, in-flight,
    model loads by result, registry poll errors, served version."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
