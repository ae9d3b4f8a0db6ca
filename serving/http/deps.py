"""Typed dependencies for the routes: the app's state and model lookup with clean errors.

The getters are async on purpose: FastAPI runs sync dependencies in its thread pool, a thread hop
per dependency per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from serving.http.follower import Follower
from serving.http.metrics import ServerMetrics
from serving.http.store import LoadedModel, ModelStore
from serving.settings import Settings


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> ServerMetrics:
    return request.app.state.metrics


async def get_follower(request: Request) -> Follower:
    return request.app.state.follower


StoreDep = Annotated[ModelStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServerMetrics, Depends(get_metrics)]
FollowerDep = Annotated[Follower, Depends(get_follower)]


def require_configured(store: ModelStore, name: str) -> None:
    """404 naming what is served, for a model this server is not configured with."""
    if name not in store.names:
        raise HTTPException(404, f"model: not served here (served: {', '.join(store.names)})")


def resolve_model(store: ModelStore, settings: Settings, name: str | None) -> LoadedModel:
    """The loaded model for a request: 404 when not configured, 503 while not loaded."""
    name = name or settings.default
    require_configured(store, name)
    loaded = store.get(name)
    if loaded is None:
        raise HTTPException(
            503, f"model '{name}' is not loaded yet: {store.status(name)}", headers={"Retry-After": "5"}
        )
    return loaded
