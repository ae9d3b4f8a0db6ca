"""uvicorn's httptools protocol with the deadlines uvicorn lacks, passed as `uvicorn.run(http=...)`.

uvicorn times out idle keep-alive connections only: a client that opens a connection and sends
nothing, or sends headers a byte every few seconds (slow-loris), or starts a body and never ends
it, holds a connection and its buffers forever. Here every request must bring its line and
headers within `header_timeout_s` of its first byte (or of the connection), and its body within
`body_timeout_s` of the headers; past that it gets a JSON 408 (when nothing was answered yet) and
the connection is closed. More than `max_connections` open connections: the newest is answered a
JSON 503 and closed at once, before anything of it is read.

A request's line and headers together may hold `max_header_bytes`: past that, a JSON 431 and the
connection closed, counted as the bytes arrive (httptools would otherwise gather a header of any
size in memory before uvicorn sees it). A request the parser cannot read gets the JSON error
shape of every other answer (uvicorn's own is plain text).
"""

from __future__ import annotations

import asyncio
import functools
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.settings import Settings


@functools.cache
def _limits() -> tuple[float, float, int, int]:
    s = Settings()
    return s.header_timeout_s, s.body_timeout_s, s.max_connections, s.max_header_bytes


def _refusal(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    _deadline: asyncio.TimerHandle | None = None
    _head_open = True  # reading a request's line and headers
    _head_bytes = 0
    _tail = b""  # the last bytes seen, for a blank line split across reads

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        header_s, _, max_connections, _ = _limits()
        super().connection_made(transport)
        if len(self.connections) > max_connections:
            transport.write(_refusal(503, "Service Unavailable", "too many connections; retry later"))
            transport.close()
            return
        self._arm(header_s, "request line and headers")

    def data_received(self, data: bytes) -> None:
        if self._head_open and not self._count_head(data):
            return
        super().data_received(data)

    def _count_head(self, data: bytes) -> bool:
        """Adds the head bytes of `data` to this request's count; False once over the limit."""
        seen = self._tail + data
        end = seen.find(b"\r\n\r\n")
        self._head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
        self._tail = seen[-3:]
        limit = _limits()[3]
        if self._head_bytes <= limit:
            return True
        self._disarm()
        if not self.transport.is_closing():
            message = f"request line and headers larger than {limit} bytes"
            self.transport.write(_refusal(431, "Request Header Fields Too Large", message))
            self.transport.close()
        return False

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self.transport.write(_refusal(400, "Bad Request", "malformed HTTP request"))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(_limits()[0], "request line and headers")

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._disarm()
        super().on_headers_complete()
        self._arm(_limits()[1], "request body")

    def on_message_complete(self) -> None:
        self._disarm()
        self._head_open, self._head_bytes, self._tail = True, 0, b""  # the next request's head
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
