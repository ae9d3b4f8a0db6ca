"""`onnxship`: one entry point, one subcommand per job; `onnxship <command> --help` for each.
(Here, not in the library: `ship` runs the stages and `serve`/`promote` are serving's, and the
library imports neither - tests/test_layout.py.)

    onnxship ship MODEL_FILE --data TABLE --target COL   one model you bring, to a registered version
    onnxship bench MODEL.onnx [--native FILE ...]          validate and time one ONNX file
    onnxship promote NAME [--version N] [--require-shadow N]  move the serving alias to a proven version
    onnxship serve [--host H --port P]                     serve the aliased versions over HTTP

Exit codes: 0 done; 1 refused (ship: a gate failed; promote: the version is not proven); 2 bad
input (an argument, file or table that does not fit), said on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def _ship(argv: list[str]) -> int:
    from tools.ship import main

    return main(argv)


def _bench(argv: list[str]) -> int:
    from onnxship.cli.bench import main

    return main(argv)


def _promote(argv: list[str]) -> int:
    from serving.registry.promote import main

    return main(argv)


def _serve(argv: list[str]) -> int:
    from serving.http.serve import main

    main(argv)
    return 0


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "ship": (_ship, "one model file through export, optimize, validate, benchmark and package"),
    "bench": (_bench, "validate and time one ONNX file (and its native model) outside the pipeline"),
    "promote": (_promote, "move the serving alias to a version that passed every gate"),
    "serve": (_serve, "serve the aliased versions over HTTP, following the alias"),
}


def usage() -> str:
    lines = ["usage: onnxship <command> [options]   (onnxship <command> --help)", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "exit codes: 0 done, 1 refused (the reason is printed), 2 bad input"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"onnxship: unknown command (known: {', '.join(COMMANDS)})\n\n{usage()}", file=sys.stderr)
        return 2
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline: MLflow reports no usage
    run, _ = COMMANDS[argv[0]]
    return run(argv[1:])


def entry() -> None:
    """The installed `onnxship` command: main(), then, where ship or bench loaded PyTorch, MLflow
    and the model frameworks, the process ends without the interpreter's teardown of them (two to
    three seconds that write nothing; onnxship.pipeline.runner.exit_now, as every stage ends)."""
    code = main()
    if "torch" in sys.modules or "mlflow" in sys.modules:
        from onnxship.pipeline.runner import exit_now

        exit_now(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
