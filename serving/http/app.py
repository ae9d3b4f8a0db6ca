"""The FastAPI app: `uvicorn --factory serving.http.app:create_app` (or `python -m serving.http.serve`).

The lifespan starts the registry follower; models load in the background and /health/ready turns
200 when every configured model is loaded and warmed up.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.http.follower import FollowerFactory, RegistryFollower
from serving.http.limits import BodyLimitMiddleware
from serving.http.metrics import ObserveMiddleware, RouteLabels, ServerMetrics
from serving.http.routes import forecast, health, models, predict, v2
from serving.http.store import ModelStore
from serving.settings import Settings


def _field_errors(err: RequestValidationError) -> str:
    """'features.temperature: Input should be a valid number' - never the input itself."""
    parts: dict[str, str] = {}
    for e in err.errors():
        if e.get("type") == "json_invalid":
            return "body: not valid JSON"
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        if e.get("type", "").endswith(("_type", "_parsing")) and loc and loc[-1] in ("float", "int"):
            loc, e = loc[:-1], {**e, "msg": "Input should be a number or null"}  # one message per field
        parts.setdefault(".".join(loc) or "body", e.get("msg", "invalid"))
    return "; ".join(f"{k}: {v}" for k, v in list(parts.items())[:5])


def create_app(settings: Settings | None = None, follower: FollowerFactory = RegistryFollower) -> FastAPI:
    """The app; `follower` builds what fills the model store (the registry follower in production,
    a fixed set of models in the fast route tests)."""
    settings = settings or Settings()
    store = ModelStore(settings.models)
    metrics = ServerMetrics()
    following = follower(settings, store, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        route_labels.build()  # once every router is included, before the first request
        following.start()
        yield
        following.stop()

    app = FastAPI(
        title="onnxship serving",
        version="0.1.0",
        lifespan=lifespan,
        description="Serves registered ONNX models by alias and follows the alias as it moves.",
    )
    app.state.settings, app.state.store, app.state.metrics, app.state.follower = (
        settings,
        store,
        metrics,
        following,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _field_errors(err)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own (404, 405, body parsing) included
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 400:  # FastAPI could not decode the body (e.g. not UTF-8)
            return JSONResponse({"error": "body: not valid JSON"}, status_code=422)
        return JSONResponse({"error": err.detail}, status_code=err.status_code, headers=err.headers)

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    route_labels = RouteLabels(app)
    app.add_middleware(ObserveMiddleware, metrics=metrics, labels=route_labels)
    for router in (predict.router, forecast.router, models.router, health.router, v2.router):
        app.include_router(router)
    log = logging.getLogger("onnxship")
    if not log.handlers:  # uvicorn configures only its own loggers
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return app
