"""``faceobf bench-server``: the recognition server's benchmark (JSON). The lead's
``faceobf bench`` group can mount the same command with :func:`add_server_parser`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    add_server_parser(sub, name="bench-server")


def add_server_parser(sub: argparse._SubParsersAction, *, name: str = "server") -> None:
    p = sub.add_parser(name, help="recognition server: concurrent clients and 1:N search")
    p.add_argument("--model", type=Path, help="model directory (default: a random model)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per gallery")
    p.add_argument("--enrol-share", type=float, default=0.2)
    p.add_argument("--search-size", type=int, default=1_000_000, help="0 skips it")
    p.add_argument("--workdir", type=Path, help="folder for the temporary galleries")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..server.bench import run_server_bench

    result = run_server_bench(
        model_dir=args.model,
        sizes=tuple(args.sizes),
        clients=args.clients,
        duration_s=args.duration,
        enrol_share=args.enrol_share,
        search_size=args.search_size,
        workdir=args.workdir,
        progress=lambda msg: print(f"bench: {msg}", file=sys.stderr),
    )
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 1 if any(g["errors"] for g in result["galleries"]) else 0
