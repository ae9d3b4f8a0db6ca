"""Prometheus metrics of the server (GET /metrics)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROUTES = {"/predict", "/predict/batch", "/models", "/benchmark", "/health/live", "/health/ready", "/metrics"}


def route_label(path: str) -> str:
    """A bounded label set: unknown paths are not allowed to grow the metrics."""
    if path in ROUTES:
        return path
    if path.startswith("/v2/"):
        return "/v2/models/{name}/infer" if path.endswith("/infer") else "/v2/other"
    return "/models/{name}" if path.startswith("/models/") else "other"


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
    gauge, latency histogram, and a count of every error answer. Successful predictions are
    counted by their routes, which know the model and version."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_label(scope["path"])
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            if status >= 400:
                self.metrics.requests.labels(route, str(status), "", "").inc()
