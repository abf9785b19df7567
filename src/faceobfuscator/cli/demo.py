"""`faceobf demo`: the main job behind `make demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceobfuscator.research.data.paths import DATASETS_ROOT


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="align and protect sample faces, then run the server demo")
    p.add_argument("--root", type=Path, default=DATASETS_ROOT)
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--client-only", action="store_true", help="only the client figure")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    # a missing dependency must fail the demo (and ``make demo``), not skip a part of it
    from faceobfuscator.research.demo.figures import client_pipeline_demo
    from faceobfuscator.research.demo.run import run_demo

    figure = client_pipeline_demo(args.root, args.out)
    print(f"client figure: {figure}")
    if args.client_only:
        return 0
    report = run_demo(root=args.root, out=args.out)
    print(f"server demo report: {report}")
    return 0
