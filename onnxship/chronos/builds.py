"""Building the configured Chronos checkpoints: each in its own fresh process, side by side.

Pretraining runs on one thread with portable kernels (onnxship/chronos/training.py,
onnxship/pipeline/kernels.py) so the weights are the same bytes on every machine; one thread
leaves the other cores idle, so the builds run in parallel, one process each. A build's numbers do
not depend on how many run beside it: every build gets a fresh process, whatever the core count.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def build_one(name: str, spec: dict[str, Any], corpus: list[str], seed: int, root: str) -> dict[str, Any]:
    """Build, pretrain and save one checkpoint into root/<name>/; returns its pretraining report."""
    import numpy as np

    from onnxship.chronos import checkpoints
    from onnxship.chronos.training import corpus_series, pretrain
    from onnxship.io import atomic_dir, write_json

    options = {k: v for k, v in spec.items() if k not in ("family", "size", "pretrain")}
    pipeline = getattr(checkpoints, spec["family"])(spec["size"], seed=seed, **options)
    series = corpus_series(corpus, min_length=2 * spec["pretrain"]["prediction_length"])
    losses = pretrain(pipeline, series, spec["pretrain"], seed)
    tenth = max(1, len(losses) // 10)
    report = {
        "checkpoint": name,
        "family": spec["family"],
        "size": spec["size"],
        "parameters": sum(p.numel() for p in pipeline.model.parameters()),
        "corpus": list(corpus),
        "corpus_series": len(series),
        "steps": len(losses),
        "loss_first_tenth": float(np.mean(losses[:tenth])),
        "loss_last_tenth": float(np.mean(losses[-tenth:])),
    }
    with atomic_dir(Path(root) / name) as out:
        pipeline.model.save_pretrained(str(out))
        write_json(out / "pretraining.json", report)
    return report


def _build_in_child(conn: Any, args: tuple) -> None:
    """In the spawned process: build, send the report (or the error), and end without the
    interpreter's teardown of PyTorch (about 1.5 s, after the work is saved and sent)."""
    try:
        conn.send(("ok", build_one(*args)))
    except Exception as err:  # the parent raises it, naming the build
        conn.send(("error", f"{type(err).__name__}: {err}"))
    conn.close()
    os._exit(0)


def build_all(builds: Mapping[str, dict], corpus: list[str], seed: int, root: Path) -> dict[str, dict]:
    """{name: report} for every build, each in a fresh spawned process, as many at once as cores."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no state from this one
    workers = max(1, min(len(builds), os.cpu_count() or 1))
    names, reports = list(builds), {}
    for start in range(0, len(names), workers):
        running = []
        for name in names[start : start + workers]:
            parent, child = spawn.Pipe()
            args = (name, dict(builds[name]), corpus, seed, str(root))
            process = spawn.Process(target=_build_in_child, args=(child, args), daemon=True)
            process.start()
            child.close()
            running.append((name, parent, process))
        for name, parent, process in running:
            try:
                kind, detail = parent.recv()
            except EOFError:  # it died before it could answer (killed, out of memory)
                kind, detail = "error", "its process ended without a report"
            process.join()
            if kind != "ok":
                raise RuntimeError(f"checkpoint {name}: {detail}")
            reports[name] = detail
    return reports
