"""uvicorn's httptools protocol with the deadlines uvicorn lacks, passed as `uvicorn.run(http=...)`.

uvicorn times out idle keep-alive connections only: a client that opens a connection and sends
nothing, or sends headers a byte every few seconds (slow-loris), or starts a body and never ends
it, holds a connection and its buffers forever. Here every request must bring its line and
headers within `header_timeout_s` of its first byte (or of the connection), and its body within
`body_timeout_s` of the headers; past that it gets a JSON 408 (when nothing was answered yet) and
the connection is closed. More than `max_connections` open connections: the newest is answered a
JSON 503 and closed at once, before anything of it is read.
"""

from __future__ import annotations

import asyncio
import functools
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.settings import Settings


@functools.cache
def _limits() -> tuple[float, float, int]:
    s = Settings()
    return s.header_timeout_s, s.body_timeout_s, s.max_connections


def _refusal(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        header_s, _, max_connections = _limits()
        super().connection_made(transport)
        if len(self.connections) > max_connections:
            transport.write(_refusal(503, "Service Unavailable", "too many connections; retry later"))
            transport.close()
            return
        self._arm(header_s, "request line and headers")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(_limits()[0], "request line and headers")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._arm(_limits()[1], "request body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow, seconds, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, seconds: float, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        answered = self.cycle is not None and self.cycle.response_started
        if not answered:
            message = f"{what} not received within {seconds:g} s"
            self.transport.write(_refusal(408, "Request Timeout", message))
            if self.cycle is not None:
                self.cycle.response_complete = True  # nothing more goes out on this connection
        self.transport.close()
