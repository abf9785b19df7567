"""`faceobf bench ...`: speed measurements that print one JSON object (and a table)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="speed benchmarks")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="KIND")
    t = kinds.add_parser("transform", help="client transform throughput and photo latency")
    t.add_argument("--root", type=Path, default=Path("../shared/datasets"))
    t.add_argument("--photos", type=int, default=60, help="LFW photos timed for latency")
    t.add_argument("--json", action="store_true", help="print only the JSON object")
    t.add_argument("--out", type=Path, help="also write the JSON here")
    t.set_defaults(func=_transform)

    from .bench_security import add_security_parser

    tr = kinds.add_parser("training", help="training and inference images/s per backbone")
    tr.add_argument("--backbones", nargs="+", default=["mobilefacenet", "iresnet18", "iresnet50"])
    tr.add_argument("--schemes", nargs="+", default=["arcface", "arcface-fd", "faceobfuscator"])
    tr.add_argument("--batch", type=int, default=32)
    tr.add_argument("--steps", type=int, default=3)
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--out", type=Path, help="also write the JSON here")
    tr.set_defaults(func=_training)

    from .bench_server import add_server_parser

    add_server_parser(kinds)
    add_security_parser(kinds)


def _transform(args: argparse.Namespace) -> int:
    from ..bench import transform_benchmark
    from ..config import ProtocolConfig
    from ..errors import InputError

    lfw = args.root / "lfw"
    if not lfw.is_dir():
        raise InputError(f"no LFW folder at {lfw}; pass --root pointing at the datasets")
    photos = sorted(lfw.glob("*/*.jpg"))[:: max(1, 13233 // args.photos)][: args.photos]
    result = transform_benchmark(ProtocolConfig(), photos)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.json:
        print(json.dumps(result))
        return 0
    for key, value in result.items():
        shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
        print(f"{key:<24} {shown}")
    return 0


def _training(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..training.bench import training_throughput

    combos = [(b, s) for b in args.backbones for s in args.schemes]
    rows = []
    for backbone, scheme in tqdm(combos, desc="bench training", unit="model"):
        rows.append(training_throughput(backbone, scheme, args.batch, args.steps, args.device))
    result = {"device": args.device, "batch": args.batch, "steps": args.steps, "runs": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'backbone':<14} {'scheme':<15} {'params':>10} {'train img/s':>12} {'infer img/s':>12}")
    for r in rows:
        print(
            f"{r['backbone']:<14} {r['scheme']:<15} {r['params']:>10,} "
            f"{r['train_images_per_s']:>12.1f} {r['inference_images_per_s']:>12.1f}"
        )
    return 0
