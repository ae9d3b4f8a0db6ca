"""What a failed registry call means, in words an operator can act on.

MLflow reports a misconfiguration with the same error codes as an empty registry: an unsupported
store URI (a `sqlite:///` store asked of the image's mlflow-skinny, a typo in the scheme) and a
file-system store both raise INVALID_PARAMETER_VALUE, the code of "alias not found". Read naively,
a wrong tracking URI looks like a model nobody promoted yet. This module tells the cases apart:

  Missing(reason)        the registry answered: no such model, or no version has the alias
  Misconfigured(reason)  it never will answer with this configuration (scheme, store, credentials):
                         retried with backoff all the same (the file may be fixed), but said so
  Unreachable(reason)    the store's database cannot be opened or reached (may pass: retried)
  None                   transient or unknown (server down, database locked): the caller's
                         generic "unreachable" path

Every reason here is ours: it may name the URI's scheme and the model, never a host, a path or a
credential (clients read it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from mlflow.exceptions import MlflowException

_ALIAS_NOT_FOUND = re.compile(r"alias \S+ not found", re.IGNORECASE)
_SCHEMES = re.compile(r"Supported URI schemes are: \[([^\]]*)\]")
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@dataclass(frozen=True)
class Missing:
    reason: str


@dataclass(frozen=True)
class Misconfigured:
    reason: str


@dataclass(frozen=True)
class Unreachable:
    reason: str


Diagnosis = Missing | Misconfigured | Unreachable | None


def scheme_of(uri: str) -> str:
    """'sqlite' for sqlite:///x.db; 'file' for a bare path (what MLflow makes of it)."""
    scheme = urlsplit(uri).scheme
    return scheme if scheme and len(scheme) > 1 else "file"  # "C:" is a drive, not a scheme


def _supported_schemes(message: str) -> str:
    found = _SCHEMES.search(message)
    if not found:
        return ""
    names = [s.strip(" '\"") for s in found.group(1).split(",")]
    return ", ".join(n for n in names if n)


def diagnose(err: BaseException, model: str, alias: str, uri: str) -> Diagnosis:
    """The meaning of `err`, raised by asking `uri` for `model`'s version aliased `alias`."""
    scheme = scheme_of(uri)
    if type(err).__name__ == "UnsupportedModelRegistryStoreURIException":
        supported = _supported_schemes(str(err))
        hint = (
            " (this install has MLflow's client only: point it at a tracking server, http(s)://…)"
            if scheme not in ("http", "https") and "http" in supported.split(", ")
            else ""
        )
        return Misconfigured(
            f"the tracking URI's scheme '{scheme}' cannot hold a model registry here"
            + (f"; this install supports: {supported}" if supported else "")
            + hint
        )
    if isinstance(err, MlflowException):
        code, message = err.error_code, str(err)
        if code == "RESOURCE_DOES_NOT_EXIST":
            return Missing(f"no model named '{model}' is registered in this tracking store")
        if code == "INVALID_PARAMETER_VALUE" and _ALIAS_NOT_FOUND.search(message):
            return Missing(f"no version of '{model}' has alias '{alias}'")
        if code == "INVALID_PARAMETER_VALUE" and "filesystem tracking backend" in message:
            return Misconfigured(
                "the tracking URI names a file-system store (./mlruns), which has no model registry: "
                "use a database store (sqlite, postgresql) or a tracking server (http)"
            )
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            given = [v for v in CREDENTIAL_VARIABLES if os.environ.get(v)]
            what = "refused the credentials given" if given else "asks for credentials and none were given"
            return Misconfigured(
                f"the tracking server {what} ({code}): set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the registry env file"
            )
        if code == "INVALID_PARAMETER_VALUE":
            return Misconfigured(
                f"the tracking store refused the request for '{model}' as invalid (INVALID_PARAMETER_VALUE; "
                "details in the server log)"
            )
        return None
    if type(err).__name__ == "OperationalError" and "locked" not in str(err):  # SQLAlchemy's
        return Unreachable(
            f"the '{scheme}' tracking store's database cannot be opened or reached "
            "(OperationalError; details in the server log)"
        )
    return None
