"""Prometheus metrics of the server (GET /metrics)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
VERSION_HEADER = b"x-model-version"


class RouteLabels:
    """The route label of a request path: the path template of the app's own route that matches
    it (e.g. /models/{name}), so the label set is exactly the app's routes plus `unmatched`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._routes: list[Any] | None = None

    def __call__(self, path: str) -> str:
        if self._routes is None:  # read once the app's routers are all included
            self._routes = [r for r in self.app.routes if hasattr(r, "path_regex")]
        for route in self._routes:
            if route.path_regex.match(path):
                return route.path
        return UNMATCHED


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "onnxship_requests_total",
            "HTTP requests by route, status, model and version",
            ["route", "status", "model", "version"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "onnxship_request_seconds",
            "Request latency in seconds",
            ["route"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "onnxship_requests_in_flight", "Requests being handled", registry=self.registry
        )
        self.model_loads = Counter(
            "onnxship_model_loads_total",
            "Model loads by result (loaded, rejected, failed)",
            ["model", "result"],
            registry=self.registry,
        )
        self.registry_errors = Counter(
            "onnxship_registry_poll_errors_total", "Failed registry polls", registry=self.registry
        )
        self.served_version = Gauge(
            "onnxship_served_version", "Registry version being served", ["model"], registry=self.registry
        )


class ObserveMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware, which costs a task and a copy per request): in-flight
    gauge, latency histogram, and a count of every answer by route and status; answers that name
    a model version (the X-Model-Version header every model route sets) count under it."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, labels: RouteLabels) -> None:
        self.app, self.metrics, self.labels = app, metrics, labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.labels(scope["path"])
        status, model, version = 500, "", ""

        async def observe(message: Message) -> None:
            nonlocal status, model, version
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", ()):
                    if key.lower() == VERSION_HEADER:
                        model, _, version = value.decode("latin-1").rpartition("/")
            await send(message)

        self.metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, str(status), model, version).inc()
