"""Shadow comparisons as evidence in the registry: written by the candidates' watcher, read by
`promote --require-shadow N`.

Each serving replica keeps its own tally for a (champion, candidate) pair and sends it whole at
intervals; it is stored as one model-version tag per replica on the candidate version
(`onnxship.shadow.<replica>`, a small JSON object: replicas never overwrite each other), and its
figures are logged as metrics to the candidate's packaging run (the MLflow UI plots them).
Promotion sums the tags that compared the candidate with the version the alias points at now:
comparisons against an older champion prove nothing about this move.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

TAG_PREFIX = "onnxship.shadow."
_REPLICA = re.compile(r"^[A-Za-z0-9_.\-]{1,120}$")
KEPT = ("champion", "candidate", "comparisons", "within_tolerance", "refused_by_candidate", "rows",
        "rows_within_tolerance", "max_abs_diff", "max_rel_diff", "tolerance", "dropped")  # fmt: skip


class BadReport(ValueError):
    """A shadow report from the server that is not one (never written to the registry)."""


def _count(record: dict, key: str) -> int:
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadReport(f"{key}: expected a count")
    return value


def log_report(client, record: dict) -> None:
    """Write one replica's tally to the candidate version (tag) and its run (metrics)."""
    model, replica, candidate = record.get("model"), record.get("replica"), record.get("candidate")
    if not isinstance(replica, str) or not _REPLICA.match(replica):
        raise BadReport("replica: not a replica name")
    if not isinstance(model, str) or not isinstance(candidate, str) or not candidate.isdigit():
        raise BadReport("model/candidate: not a registered version")
    comparisons, within = _count(record, "comparisons"), _count(record, "within_tolerance")
    if within > comparisons:
        raise BadReport("within_tolerance: more than the comparisons")
    kept = {k: record[k] for k in KEPT if k in record}
    if "latency_ms" in record:
        kept["latency_ms"] = record["latency_ms"]
    kept["at"] = round(time.time())
    client.set_model_version_tag(model, candidate, TAG_PREFIX + replica, json.dumps(kept, sort_keys=True))
    run_id = client.get_model_version(model, candidate).run_id
    if run_id:
        step = comparisons
        client.log_metric(run_id, "shadow_comparisons", comparisons, step=step)
        client.log_metric(
            run_id, "shadow_within_share", within / comparisons if comparisons else 0, step=step
        )
        for key in ("max_abs_diff", "max_rel_diff"):
            if isinstance(record.get(key), int | float):
                client.log_metric(run_id, f"shadow_{key}", float(record[key]), step=step)
        for role, figures in (record.get("latency_ms") or {}).items():
            if role in ("champion", "candidate") and isinstance(figures, dict):
                for q in ("p50", "p99"):
                    if isinstance(figures.get(q), int | float):
                        client.log_metric(run_id, f"shadow_{role}_{q}_ms", float(figures[q]), step=step)


@dataclass(frozen=True)
class Evidence:
    comparisons: int
    within: int
    replicas: int

    def verdict(self, required: int, min_share: float) -> str | None:
        """None when promotion may go on; else why not, in words."""
        outside = self.comparisons - self.within
        if self.comparisons and self.within / self.comparisons < min_share:
            return (
                f"{outside} of {self.comparisons} shadow comparisons were outside the candidate's "
                f"tolerances (at most {1 - min_share:.3%} may be): it answers live requests "
                "unlike the champion"
            )
        if self.within < required:
            return (
                f"{self.within} shadow comparisons within tolerance, {required} required "
                f"(from {self.replicas} replica(s)); turn shadow mode on for this model "
                "(serving's shadow_models) and let it see more traffic"
            )
        return None


def evidence(tags: dict[str, str], champion: str | None) -> Evidence:
    """The comparisons recorded on a candidate version against `champion` (None: no champion
    yet, so nothing was compared)."""
    comparisons = within = replicas = 0
    for key, value in tags.items():
        if not key.startswith(TAG_PREFIX):
            continue
        try:
            record = json.loads(value)
            if str(record.get("champion")) != str(champion):
                continue
            comparisons += _count(record, "comparisons")
            within += _count(record, "within_tolerance")
            replicas += 1
        except (ValueError, AttributeError):
            continue  # an unreadable tag proves nothing
    return Evidence(comparisons, within, replicas)
