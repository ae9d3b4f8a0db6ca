"""`python -m serving.http.serve [--host H] [--port P] [--workers N]`: uvicorn on the app factory,
with the limits of conf/serving (connections, header and body deadlines, keep-alive, graceful
shutdown) applied in uvicorn's protocol (serving.http.protocol)."""

from __future__ import annotations

import argparse
import os

import uvicorn

from serving.http.protocol import GuardedHttpToolsProtocol
from serving.settings import Settings


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description="Serve registered ONNX models by alias.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=settings.workers, help="default: conf/serving workers")
    parser.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    args = parser.parse_args(argv)
    # the workers read their settings afresh: tell them how many share this host's cores
    os.environ["ONNXSHIP_SERVING_WORKERS"] = str(args.workers)
    uvicorn.run(
        "serving.http.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        http=GuardedHttpToolsProtocol,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        log_level="info",
        access_log=args.access_log,
    )


if __name__ == "__main__":
    main()
