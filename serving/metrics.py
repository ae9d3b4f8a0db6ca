"""Prometheus metrics of the server (GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
