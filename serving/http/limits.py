"""Request limits as pure ASGI middleware, checked before any route parses anything:

- requests in flight: over `max_in_flight`, a JSON 503 with Retry-After at once (health and
  metrics are exempt, so probes still answer under load);
- body size: 413 once a body passes `max_body_bytes`, having held at most that much of it;
- value count: a body with more numbers than its route can need (counted as commas as the chunks
  arrive, a byte scan far cheaper than parsing) is a 413 before it is parsed, and the rest of it
  is never read. A 1 MiB body of 350 k empty rows otherwise costs the event loop half a second of
  JSON and validation work before its 422. Feature-row routes need at most rows x (widest served
  model + 1); every other route `max_values`.

FastAPI has no body limit of its own (it reads any body whole), and it turns errors raised while
reading into 400s, so the body is read here first and replayed to the app. Slow clients are cut
off below this, in the HTTP protocol (serving.http.protocol).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.http.activity import Activity
from serving.http.metrics import ServerMetrics

EXEMPT_PREFIXES = ("/health/", "/metrics")


async def send_error(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        max_values: Callable[[str], int],
        max_in_flight: int,
        metrics: ServerMetrics,
        activity: Activity | None = None,
    ) -> None:
        """`max_values(path)`: the most numbers a body to that route can need; `activity` (shadow
        mode): where requests in flight are published for the shadow replayer."""
        self.app, self.max_bytes, self.max_values = app, max_bytes, max_values
        self.max_in_flight, self.metrics, self.activity = max_in_flight, metrics, activity
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.metrics.rejected_requests.labels("in_flight").inc()
            await send_error(send, 503, "server busy; retry later", {"retry-after": "1"})
            return
        self.in_flight += 1
        if self.activity is not None:
            self.activity.publish(self.in_flight)
        try:
            if scope["method"] in ("GET", "HEAD", "OPTIONS"):
                await self.app(scope, receive, send)
            else:
                await self._with_body(scope, receive, send)
        finally:
            self.in_flight -= 1
            if self.activity is not None:
                self.activity.publish(self.in_flight)

    async def _with_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        chunks, size, commas, limit = [], 0, 0, self.max_values(scope["path"])
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away (or was cut off as too slow)
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            commas += body.count(b",")  # as the chunks arrive: the rest of a hopeless body is never read
            if commas >= limit:
                self.metrics.rejected_requests.labels("values").inc()
                await send_error(send, 413, f"request has more than {limit} values", {"connection": "close"})
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        self.metrics.rejected_requests.labels("body_bytes").inc()
        await send_error(
            send, 413, f"request body larger than {self.max_bytes} bytes", {"connection": "close"}
        )
