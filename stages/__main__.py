"""`python -m stages <stage> key=value ...`: run one stage, from a warm process when one is up.

dvc.yaml calls every stage this way. It runs `python -m stages.<stage> key=value ...` (what to
type to run a stage by hand, always cold), started by onnxship.pipeline.warm's fork server where it can
be: the seconds of imports a new process would spend are spent there once.
"""

from __future__ import annotations

import sys
from pathlib import Path

from onnxship.pipeline.kernels import QUIET_OPENMP, REPRODUCIBLE_KERNELS, TORCH_KERNELS

# every script in this folder is a stage (tests/test_layout.py: stages/ holds nothing else)
STAGES = tuple(sorted(p.stem for p in Path(__file__).parent.glob("*.py") if not p.stem.startswith("_")))
# variables a stage sets before its imports, because libraries read them when they load: its warm
# server is one started with them (onnxship/pipeline/kernels.py: byte-reproducible weights for
# training; every other stage has OpenMP threads sleep between calls, as the benchmark times native)
STAGE_ENV = {"train": REPRODUCIBLE_KERNELS, "checkpoint": TORCH_KERNELS}
# stages that run once per pipeline in an environment of their own: a server started for them would
# serve nobody, and its import of every library would take a core from the stage's own work
NO_SERVER = frozenset({"checkpoint"})


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STAGES:
        print(f"usage: python -m stages {{{','.join(STAGES)}}} key=value ...", file=sys.stderr)
        return 2
    import os

    from onnxship.pipeline.warm import run

    # MLflow 3 reports usage to its makers from every process unless told not to (each stage
    # tried to fetch its reporting config over the network): a pipeline that runs offline sends nothing
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    stage = argv[0]
    return run(
        f"stages.{stage}",
        argv[1:],
        env=STAGE_ENV.get(stage, QUIET_OPENMP),
        start_server=stage not in NO_SERVER,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
