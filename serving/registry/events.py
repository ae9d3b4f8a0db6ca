"""The watcher's events: one JSON object per line on stdout, printed whole from any thread."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator

_print_lock = threading.Lock()


def emit(event: str, **fields) -> None:
    with _print_lock:
        print(json.dumps({"event": event, **fields}), flush=True)


@contextlib.contextmanager
def holding_output() -> Iterator[None]:
    """No event is being printed while this is held (a fork copies whatever lock a thread holds)."""
    with _print_lock:
        yield
