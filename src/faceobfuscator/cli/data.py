"""``faceobf data prepare {lfw,cfp,att}``, or ``faceobf data prepare NAME --images DIR``:
align a dataset, or any folder of photos, into 112x112 PNG crops."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from faceobfuscator.research.data.paths import ALIGNED_ROOT, DATASETS_ROOT

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="dataset preparation")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    prepare = sub.add_parser(
        "prepare",
        help="detect, landmark and align every face of a dataset",
        description="Align a dataset to OUT/<identity>/<name>.png (112x112 RGB) with a "
        "manifest.jsonl and a summary.json; rerunning resumes where it stopped. DATASET is "
        "lfw, cfp or att, or any name with --images DIR: every .jpg/.jpeg/.png under DIR "
        "(largest face, none kept when no face is found).",
    )
    prepare.add_argument("dataset", metavar="DATASET", help="lfw, cfp, att, or a name for --images")
    prepare.add_argument("--root", type=Path, default=DATASETS_ROOT, help="datasets folder")
    prepare.add_argument(
        "--images", type=Path, default=None, help="a folder of photos to align instead"
    )
    prepare.add_argument(
        "--out", type=Path, default=None, help="output folder (default cache/aligned/DATASET)"
    )
    prepare.add_argument("--workers", type=int, default=2, help="worker processes")
    prepare.add_argument("--limit", type=int, default=None, help="only the first N images")
    prepare.add_argument(
        "--config", type=Path, default=None, help="protocol config JSON (default: built-in)"
    )
    prepare.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from faceobfuscator.errors import InputError
    from faceobfuscator.protocol.config import ProtocolConfig
    from faceobfuscator.research.data.datasets import DATASETS
    from faceobfuscator.research.data.prepare import prepare_dataset, prepare_folder

    config = ProtocolConfig.load(args.config) if args.config else ProtocolConfig()
    out = args.out if args.out is not None else ALIGNED_ROOT / args.dataset
    options = {"config": config, "workers": args.workers, "limit": args.limit}
    if args.images is not None:
        summary = prepare_folder(args.dataset, args.images, out, **options)
    elif args.dataset in DATASETS:
        summary = prepare_dataset(args.dataset, args.root, out, **options)
    else:
        raise InputError(
            f"unknown dataset {args.dataset!r}; known: {list(DATASETS)}, "
            "or give any name with --images DIR"
        )
    print(json.dumps(summary, indent=2))
    return 0
