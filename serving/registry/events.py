"""The watcher's events: one JSON object per line on stdout, printed whole from any thread."""

from __future__ import annotations

import json
import threading

_print_lock = threading.Lock()


def emit(event: str, **fields) -> None:
    with _print_lock:
        print(json.dumps({"event": event, **fields}), flush=True)
