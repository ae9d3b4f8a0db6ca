"""`python -m stages <stage> key=value ...`: run one stage, from a warm process when one is up.

dvc.yaml calls every stage this way. It runs `python -m stages.<stage> key=value ...` (what to
type to run a stage by hand, always cold), started by onnxship.warm's fork server where it can
be: the seconds of imports a new process would spend are spent there once.
"""

from __future__ import annotations

import sys

STAGES = (
    "prepare",
    "checkpoint",
    "train",
    "export",
    "optimize",
    "validate",
    "benchmark",
    "package",
    "summarize",
)
# these set numeric-library variables before their imports (byte-reproducible weights): a process
# that imported the libraries already could not honour them
COLD = frozenset({"checkpoint", "train"})


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STAGES:
        print(f"usage: python -m stages {{{','.join(STAGES)}}} key=value ...", file=sys.stderr)
        return 2
    from onnxship.warm import run

    return run(f"stages.{argv[0]}", argv[1:], cold=argv[0] in COLD)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
