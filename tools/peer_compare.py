"""Our registered variant vs Microsoft Olive's automatic routes, on the same exported graph.

    tools/peer_olive.sh models/onnx/MODEL/model.onnx PEER_DIR    (Olive's routes, its own venv)
    python -m tools.peer_compare MODEL PEER_DIR [--rounds 40 16]  (or both: make peer-olive)

Builds the inputs from the project's own test windows (rows) and the native answers for them,
finds the variant the package stage registered (reports/package/MODEL.json) and the thread count
it was registered with, and runs tools/peer_olive.py: every model interleaved in one process,
same threads, spinning off. Writes reports/peers/olive.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def feeds_and_reference(model: str, folder: Path, rows: int = 32) -> tuple[Path, Path]:
    from onnxship import families
    from onnxship.contract import NATIVE_META, OUTPUTS, ForecastSpec, Task
    from onnxship.io import read_json
    from onnxship.pipeline.config import compose_config, model_spec
    from onnxship.pipeline.workload import workload

    cfg = compose_config([f"model={model}"], config_dir=ROOT / "conf")
    meta = read_json(Path(cfg.paths.native) / model / NATIVE_META)
    windows = workload(cfg).bench_feeds(model_spec(cfg), meta, rows)
    family, est, meta = families.load_native(Path(cfg.paths.native) / model)
    answer = family.native_call(est, meta)(windows)  # PyTorch eager on the exported wrapper
    feeds = ForecastSpec.from_metadata(meta).graph_feed(windows)  # as the graph takes them
    np.savez(folder / "feeds.npz", **feeds)
    np.savez(folder / "reference.npz", **{OUTPUTS[Task.FORECAST][0]: np.asarray(answer)})
    return folder / "feeds.npz", folder / "reference.npz"


def main(argv: list[str]) -> int:
    from onnxship.io import read_json
    from tools.peer_olive import main as compare

    model, peer_dir, passed_on = argv[0], Path(argv[1]), argv[2:]  # e.g. --rounds: tools/peer_olive.py
    package = read_json(ROOT / "reports" / "package" / f"{model}.json")
    if not package.get("registered"):
        print(f"{model} has no registered version (reports/package/{model}.json)", file=sys.stderr)
        return 1
    variant = package["variant"]
    # the thread count the registered variant was tuned to at the target batch size
    row = next(c for c in package["candidates"] if c["variant"] == variant)
    cell = row["batches"][str(package["target_batch_size"])]
    feeds, reference = feeds_and_reference(model, peer_dir)
    out = ROOT / "reports" / "peers" / "olive.json"
    return compare(
        [
            "--ours",
            f"registered_{variant}={ROOT / 'models' / 'optimized' / model / f'{variant}.onnx'}",
            "--baseline",
            f"fp32_export={ROOT / 'models' / 'onnx' / model / 'model.onnx'}",
            "--peer-dir",
            str(peer_dir),
            "--feeds",
            str(feeds),
            "--reference",
            str(reference),
            "--threads",
            str(cell["settings"]["intra_op_threads"]),
            "--out",
            str(out),
            *passed_on,
        ]
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
