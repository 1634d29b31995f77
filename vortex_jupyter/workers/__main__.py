"""``python -m vortex_jupyter.workers``: a worker process, or the fork server that forks them.

    python -m vortex_jupyter.workers worker --config '{"uid": ..., "connect": ..., "prefix": ...}'
    python -m vortex_jupyter.workers forkserver --fd 5 --shm-prefix vx123- --preload numpy,torch

Both are started by the supervisor (``vortex_jupyter.workers.supervisor``), not by hand.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vortex_jupyter.workers")
    sub = parser.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("worker", help="run one worker (connects to the kernel's socket)")
    w.add_argument("--config", required=True, help="WorkerConfig as JSON")
    f = sub.add_parser("forkserver", help="preload modules, then fork workers on request")
    f.add_argument("--fd", type=int, required=True)
    f.add_argument("--shm-prefix", required=True)
    f.add_argument("--preload", default="")
    f.add_argument("--late", default="", help="imported in the background once serving")
    args = parser.parse_args(argv)
    if args.mode == "worker":
        from .worker import WorkerConfig
        from .worker import main as worker_main

        return worker_main(WorkerConfig.from_dict(json.loads(args.config)))
    from .launcher import serve

    return serve(args.fd, [m for m in args.preload.split(",") if m], args.shm_prefix,
                 [m for m in args.late.split(",") if m])


if __name__ == "__main__":
    sys.exit(main())
