"""The FastAPI app: `uvicorn --factory serving.http.app:create_app` (or `python -m serving.http.serve`).

The lifespan starts the registry follower; models load in the background and /health/ready turns
200 when every configured model is loaded and warmed up.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.http.follower import Follower, FollowerFactory, RegistryFollower
from serving.http.limits import RequestGuard
from serving.http.metrics import ObserveMiddleware, RouteLabels, ServerMetrics
from serving.http.routes import forecast, health, models, predict, v2
from serving.http.routes.v2 import InferRequest, InferTensor
from serving.http.schemas import BatchRequest, ForecastRequest, PredictRequest
from serving.http.shadow import Shadow
from serving.http.shadow_replayer import LIMIT_KEYS
from serving.http.store import ModelStore
from serving.settings import Settings

# field names of the request schemas: the only names an error may repeat (a client's own dict keys
# can carry anything, e.g. markup: they are shown as <key>)
SCHEMA_FIELDS = {
    name
    for schema in (PredictRequest, BatchRequest, ForecastRequest, InferRequest, InferTensor)
    for name in schema.model_fields
} | {"float", "int"}


def _location(loc: tuple) -> list[str]:
    return [str(p) if isinstance(p, int) or p in SCHEMA_FIELDS else "<key>" for p in loc if p != "body"]


def _field_errors(err: RequestValidationError) -> str:
    """'rows.0.<key>: Input should be a number or null' - field paths, never the input itself."""
    parts: dict[str, str] = {}
    for e in err.errors():
        if e.get("type") == "json_invalid":
            return "body: not valid JSON"
        loc = _location(e.get("loc", ()))
        if e.get("type", "").endswith(("_type", "_parsing")) and loc and loc[-1] in ("float", "int"):
            loc, e = loc[:-1], {**e, "msg": "Input should be a number or null"}  # one message per field
        parts.setdefault(".".join(loc) or "body", e.get("msg", "invalid"))
    return "; ".join(f"{k}: {v}" for k, v in list(parts.items())[:5])


def value_limit(settings: Settings, store: ModelStore, rows: int | None) -> int:
    """Commas a body of `rows` feature rows can need (bounded by the widest served model); any
    other body (rows None) may hold `max_values`."""
    widest = store.widest_row
    if rows is None or widest is None:
        return settings.max_values
    return min(settings.max_values, rows * (widest + 1) + 16)


async def supervise(following: Follower, every_s: float = 1.0) -> None:
    """Restarts the follower (thread or watcher) when it died, and keeps its gauge current."""
    log = logging.getLogger("onnxship.follower")
    while True:
        await asyncio.sleep(every_s)
        try:
            # in a thread: restarting a watcher waits for it to exit, which must not hold the loop
            await asyncio.to_thread(following.check)
        except Exception:  # the supervisor itself must not die
            log.exception("follower check failed")


async def report_shadow(shadow: Shadow, candidates: Follower, every_s: float) -> None:
    """The comparisons so far, to the candidates' watcher, which logs them to each candidate
    version in MLflow (this process never imports MLflow)."""
    while True:
        await asyncio.sleep(every_s)
        for record in shadow.reports():
            candidates.tell({"shadow": record})


def shadowing(settings: Settings, metrics: ServerMetrics, follower: FollowerFactory):
    """Shadow mode's parts when some model is shadowed: the candidates' store, their follower
    (`candidate_alias`, own watcher), and the comparer; (None, None) otherwise."""
    if not settings.shadow_models:
        return None, None
    candidates = ModelStore(settings.shadow_models)
    limits = {key: getattr(settings, key) for key in LIMIT_KEYS}
    shadow = Shadow(
        settings.shadow_models, settings.shadow_share, settings.shadow_queue, candidates, metrics, limits
    )
    return shadow, follower(settings, candidates, metrics, candidates=True)


def create_app(settings: Settings | None = None, follower: FollowerFactory = RegistryFollower) -> FastAPI:
    """The app; `follower` builds what fills the model store (the registry follower in production,
    a fixed set of models in the fast route tests)."""
    settings = settings or Settings()
    store = ModelStore(settings.models)
    metrics = ServerMetrics()
    following = follower(settings, store, metrics)
    shadow, candidate_following = shadowing(settings, metrics, follower)
    rows_by_route = {"/predict": 1, "/predict/batch": settings.max_batch_rows}  # feature-row routes

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        route_labels.build()  # once every router is included, before the first request
        # inference in the thread pool (batches, forecasts, V2, slow models) runs at most this many
        # calls at once: 40 (anyio's default) calls on 2 cores only thrash, and starve the event
        # loop that answers health and the fast /predict path; the rest wait their turn
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.inference_concurrency
        following.start()
        tasks = [asyncio.create_task(supervise(following))]
        if shadow is not None:
            shadow.start()
            candidate_following.start()
            tasks.append(asyncio.create_task(supervise(candidate_following)))
            tasks.append(
                asyncio.create_task(report_shadow(shadow, candidate_following, settings.shadow_report_s))
            )
        yield
        for task in tasks:
            task.cancel()
        following.stop()
        if shadow is not None:
            candidate_following.stop()
            shadow.stop()

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
    app.state.shadow = shadow

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _field_errors(err)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own (404, 405, body parsing) included
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 400:  # FastAPI could not decode the body (e.g. not UTF-8)
            return JSONResponse({"error": "body: not valid JSON"}, status_code=422)
        return JSONResponse({"error": err.detail}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)  # the same JSON shape for a 500; the details go to the log
    async def internal(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(err).__name__}); see the server log"}, 500)

    app.add_middleware(
        RequestGuard,
        max_bytes=settings.max_body_bytes,
        max_values=lambda path: value_limit(settings, store, rows_by_route.get(path)),
        max_in_flight=settings.max_in_flight,
        metrics=metrics,
        activity=shadow.activity if shadow is not None else None,
    )
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
