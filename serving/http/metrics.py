"""Prometheus metrics of the server (GET /metrics)."""

from __future__ import annotations

import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
VERSION_HEADER = b"x-model-version"


def _pattern(template: str) -> re.Pattern[str]:
    """/models/{name} -> ^/models/[^/]+$"""
    parts = re.split(r"(\{[^/}]+\})", template)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


class RouteLabels:
    """The route label of a request path: the template of the app's own route that matches it
    (e.g. /models/{name}), read from the app's OpenAPI paths and docs URLs, so the label set is
    exactly the app's routes plus `unmatched` and never grows with what clients send."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._static: dict[str, str] | None = None
        self._templated: list[tuple[re.Pattern[str], str]] = []

    def build(self) -> None:
        """Read the route table; the app calls this at start-up so no request pays for it."""
        app = self.app
        templates = list(app.openapi()["paths"])
        urls = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
        templates += [u for u in urls if u]
        self._templated = [(_pattern(t), t) for t in templates if "{" in t]
        self._static = {t: t for t in templates if "{" not in t}

    def __call__(self, path: str) -> str:
        if self._static is None:  # an app run without its lifespan builds on first use
            self.build()
        label = self._static.get(path)  # the hot routes (/predict, /forecast) are one dict lookup
        if label is not None:
            return label
        for pattern, template in self._templated:
            if pattern.match(path):
                return template
        return UNMATCHED


class FollowingMetrics:
    """What a registry follower counts; the candidates' follower (shadow mode) has its own set, so
    its loads and outages never show as the served models' (nor flip `onnxship_following`)."""

    def __init__(self, registry: CollectorRegistry, prefix: str, what: str) -> None:
        self.model_loads = Counter(
            f"{prefix}model_loads_total",
            f"{what.capitalize()}model loads by result (loaded, rejected, failed, withdrawn)",
            ["model", "result"],
            registry=registry,
        )
        self.registry_errors = Counter(
            f"{prefix}registry_poll_errors_total", f"Failed {what}registry polls", registry=registry
        )
        self.served_version = Gauge(
            f"{prefix}served_version",
            f"Registry version of the {what}model loaded",
            ["model"],
            registry=registry,
        )
        self.following = Gauge(
            f"{prefix}following",
            f"1 while the {what}registry watcher runs and reports, 0 when following has stopped",
            registry=registry,
        )
        self.follower_restarts = Counter(
            f"{prefix}follower_restarts_total",
            f"Restarts of the {what}registry follower, by cause "
            "(watcher_exit, watcher_silent, thread, error)",
            ["cause"],
            registry=registry,
        )
        self.watcher_bad_lines = Counter(
            f"{prefix}watcher_unreadable_lines_total",
            f"Lines from the {what}registry watcher that were not a known event (skipped)",
            registry=registry,
        )


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
        self.served = FollowingMetrics(self.registry, "onnxship_", "")
        self.candidates = FollowingMetrics(self.registry, "onnxship_candidate_", "candidate ")
        self.shadow_comparisons = Counter(
            "onnxship_shadow_comparisons_total",
            "Live requests answered by the candidate too, by result (within: every row within the "
            "candidate's tolerances; outside; refused: the candidate refused the input)",
            ["model", "champion", "candidate", "result"],
            registry=self.registry,
        )
        self.shadow_max_abs_diff = Gauge(
            "onnxship_shadow_max_abs_diff",
            "Largest |candidate - champion| seen on live requests",
            ["model", "champion", "candidate"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "onnxship_shadow_dropped_total",
            "Sampled requests not compared because the shadow queue was full",
            ["model"],
            registry=self.registry,
        )
        self.shadow_call_seconds = Histogram(
            "onnxship_shadow_call_seconds",
            "Inference time of one shadowed request, by role (champion, candidate) and version",
            ["model", "role", "version"],
            buckets=(0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.rejected_requests = Counter(
            "onnxship_requests_refused_total",
            "Requests refused before reaching a route, by limit (in_flight, connections, timeout, values)",
            ["limit"],
            registry=self.registry,
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
