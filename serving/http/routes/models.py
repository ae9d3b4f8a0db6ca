"""GET /models, /models/{name}, /benchmark: what is served, from which version, measured how."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from serving.http.deps import SettingsDep, StoreDep, require_configured, resolve_model
from serving.http.figures import served_figures
from serving.http.schemas import ERRORS

router = APIRouter(tags=["models"])
PUBLIC_METADATA = (
    "variant",
    "family",
    "task",
    "features",
    "columns",  # a model of typed columns: each column's type, a category's known values
    "classes",
    "forecast",
    "target",
    "inputs",
    "outputs",
    "inference_settings",
    "accepts_nan",
    "gates",
    "parity",
    "latency_ms",
    "sha256",
    "runtime",  # "native": served by MLflow's scoring server (no ONNX variant could be proven)
    "native_reason",
)


def describe(store, settings, name: str, shadow=None) -> dict:
    loaded = store.get(name)
    entry = {"name": name, "alias": settings.alias, "status": store.status(name)}
    waiting = store.waiting(name)
    if waiting is not None:  # the alias moved on, but that version is not served (yet)
        entry["pending"] = waiting
    if loaded is not None:
        entry |= {
            "version": loaded.version,
            "loaded_at": loaded.loaded_at,
            **{k: loaded.metadata.get(k) for k in PUBLIC_METADATA},
            "sha256": loaded.sha256,  # of the bytes this server loaded, hashed as it read them
        }
    compared = shadow.summary(name) if shadow is not None else None
    if compared is not None:  # shadow mode: how its candidate answered the same live requests
        entry["shadow"] = compared
    return entry


@router.get("/models")
async def list_models(request: Request, store: StoreDep, settings: SettingsDep) -> dict:
    shadow = request.app.state.shadow
    return {
        "default": settings.default,
        "models": [describe(store, settings, n, shadow) for n in store.names],
    }


@router.get("/models/{name}", responses=ERRORS)
async def get_model(name: str, request: Request, store: StoreDep, settings: SettingsDep) -> dict:
    require_configured(store, name)
    return describe(store, settings, name, request.app.state.shadow)


@router.get("/benchmark", responses=ERRORS)
def benchmark(response: Response, store: StoreDep, settings: SettingsDep, model: str | None = None) -> dict:
    """The figures of the version being served (native vs the served variant: p50/p99 with
    intervals and sample counts, speedup, cold start and RSS) and the pipeline's whole benchmark
    report (native vs every ONNX variant)."""
    loaded = resolve_model(store, settings, model)
    response.headers["X-Model-Version"] = f"{loaded.name}/{loaded.version}"
    if loaded.benchmark is None:
        raise HTTPException(404, f"version {loaded.version} of '{loaded.name}' carries no benchmark report")
    variant = loaded.metadata.get("variant")
    return {
        "model": loaded.name,
        "version": loaded.version,
        "variant": variant,
        # the summary's figures for this version (intervals and sample counts), then the report
        "figures": served_figures(loaded.benchmark, variant),
        "report": loaded.benchmark,
    }
