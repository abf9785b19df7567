"""``faceobf train CONFIG``: train a recognition network (see ``configs/``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a recognition network on a scheme's features",
        description="Train from a JSON/TOML configuration; writes metrics.jsonl, curves.png, "
        "a checkpoint each epoch and OUT/model. Under torchrun (WORLD_SIZE set) it trains "
        "with DistributedDataParallel.",
    )
    p.add_argument("config", type=Path, help="training configuration (.json or .toml)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--pack", type=Path, default=None, help="train on this pack file instead")
    p.add_argument("--epochs", type=int, default=None, help="override the epochs")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="end after this many steps (0: validate and save the initial network)",
    )
    p.add_argument(
        "--synthetic",
        type=int,
        default=None,
        metavar="IDENTITIES",
        help="random faces of this many identities instead of the data (timing only)",
    )
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from faceobfuscator.research.training.config import SyntheticData, load_train_config
    from faceobfuscator.research.training.loop import train

    config = load_train_config(args.config)
    changes: dict = {}
    if args.device:
        changes["device"] = args.device
    if args.pack:
        changes["data"] = type(config.data)(pack=str(args.pack))
    if args.synthetic:
        syn = SyntheticData(identities=args.synthetic)
        changes["data"] = type(config.data)(synthetic=syn)
    if args.epochs:
        changes["epochs"] = args.epochs
    if args.max_seconds:
        changes["max_seconds"] = args.max_seconds
    if args.max_steps is not None:
        changes["max_steps"] = args.max_steps
    if args.compile:
        changes["compile"] = True
    if changes:
        config = config.replace(**changes)
    out = args.out or Path("runs") / (config.name or args.config.stem)
    command = shlex.join(["faceobf", *sys.argv[1:]])
    model_dir = train(
        config, out, resume=args.resume, progress=not args.no_progress, command=command
    )
    print(f"model: {model_dir}")
    return 0
