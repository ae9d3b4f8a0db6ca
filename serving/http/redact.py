"""What the server may say about itself: status texts without absolute paths of this host.

Reasons from the watcher, ONNX Runtime and the OS name files by absolute path (the cache folder,
the project root); a client needs the file's name, not where this host keeps it."""

from __future__ import annotations

import re

# an absolute path not part of a URL: "/" at a word start, not after ":" or another "/"
_ABSOLUTE = re.compile(r"(?<![\w:/.])/(?:[^\s'\"`,;()<>\[\]{}/]+/)+([^\s'\"`,;()<>\[\]{}/]*)")
_SQLITE = re.compile(r"sqlite:///+(?:[^\s'\"`,;()<>\[\]{}/]+/)+([^\s'\"`,;()<>\[\]{}/]*)")
MAX_CHARS = 600


def redact(text: str) -> str:
    """'cannot open /srv/cache/xgboost/v3/model.onnx' -> 'cannot open …/model.onnx', cut to length."""
    text = _SQLITE.sub(lambda m: f"sqlite:///…/{m.group(1)}", text)
    text = _ABSOLUTE.sub(lambda m: f"…/{m.group(1)}", text)
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + "…"
