"""What serving may say about its surroundings, in two strengths.

- `without_credentials` (log lines, files, anything an operator reads): a URL keeps its host but
  loses its user and password (`http://user:pass@mlflow:5000` -> `http://***@mlflow:5000`), and
  query values named like secrets are blanked.
- `redact` (anything a client reads: /health, /models, error bodies): no secret, no address and no
  path of this host at all. A URL keeps only its scheme, urllib3's `host='…', port=…` and bare
  `host:port` / IP addresses are blanked, absolute paths keep their file name.

Reasons come from the watcher, MLflow, boto3, ONNX Runtime and the OS, and name the registry and
the cache by URL and absolute path; a client needs to know that the registry is unreachable or a
file is bad, never where they are.
"""

from __future__ import annotations

import re

MAX_CHARS = 600
_PATH_PART = r"[^\s'\"`,;()<>\[\]{}/]"
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://[^\s'\"`<>()\[\]{},;]*")
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@'\"`<>]*@")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;\s](?:password|passwd|pwd|token|secret|signature|x-amz-signature|x-amz-credential|"
    r"x-amz-security-token|access_key|secret_key|api_key|apikey)=)[^&\s'\"`]*"
)
# an absolute path not part of a URL: "/" at a word start, not after ":" or another "/"
_ABSOLUTE = re.compile(rf"(?<![\w:/.])/(?:{_PATH_PART}+/)+({_PATH_PART}*)")
_SQLITE = re.compile(rf"sqlite:///+(?:{_PATH_PART}+/)+({_PATH_PART}*)")
_HOST_ARG = re.compile(r"\b(host|port)=(?:'[^']*'|\"[^\"]*\"|[\w.:-]+)")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")
_IPV6 = re.compile(r"\[[0-9a-fA-F:]+\](?::\d+)?")
_HOST_PORT = re.compile(r"\b[a-zA-Z0-9](?:[a-zA-Z0-9-]*\.)*[a-zA-Z0-9-]*[a-zA-Z-][a-zA-Z0-9-]*:\d{2,5}\b")


def without_credentials(text: str) -> str:
    """`http://user:pass@host/x?token=abc` -> `http://***@host/x?token=***`."""
    text = _USERINFO.sub(r"\1***@", text)
    return _SECRET_QUERY.sub(r"\1***", text)


def redact(text: str) -> str:
    """For clients: 'cannot open /srv/cache/xgboost/v3/model.onnx' -> 'cannot open …/model.onnx';
    'HTTPConnectionPool(host='mlflow.internal', port=5000)' -> 'HTTPConnectionPool(host=…, port=…)';
    'http://user:pw@mlflow:5000/api' -> 'http://…'. Cut to length."""
    text = _SQLITE.sub(lambda m: f"sqlite:///…/{m.group(1)}", text)
    text = _URL.sub(lambda m: f"{m.group(1)}://…", text)
    text = _HOST_ARG.sub(r"\1=…", text)
    text = _IPV6.sub("…", _IPV4.sub("…", text))
    text = _HOST_PORT.sub("…", text)
    text = _ABSOLUTE.sub(lambda m: f"…/{m.group(1)}", text)
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + "…"
