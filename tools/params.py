"""Write params.yaml from conf/ (or, with --check, fail when they differ).

python -m tools.params            # rewrite params.yaml
python -m tools.params --check    # exit 1 and list drifted keys
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from onnxship.pipeline.config import PARAMS_FILE, compose_config, params_drift

HEADER = "# GENERATED from conf/ by `make params` (python -m tools.params). Edit conf/, not this file.\n"


def main(argv: list[str]) -> int:
    if "--check" in argv:
        drift = params_drift()
        if drift:
            print("params.yaml differs from conf/ at: " + ", ".join(drift), file=sys.stderr)
            return 1
        print("params.yaml matches conf/")
        return 0
    cfg = compose_config()
    Path(PARAMS_FILE).write_text(HEADER + OmegaConf.to_yaml(cfg, resolve=True))
    print(f"wrote {PARAMS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
