"""``faceobf data split`` (training/test identities) and ``faceobf data pack`` (the
training images in one compact file)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from faceobfuscator.cli._groups import command_group, named_paths
from faceobfuscator.research.data.paths import ALIGNED_ROOT, DATASETS_ROOT, TRAIN_PACK

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    data = command_group(subparsers, "data", "dataset preparation", "data_command")
    split = data.add_parser(
        "split",
        help="compute the training identities disjoint from the test pairs",
        description="Training identities: every LFW and CFP person who appears in no test "
        "pair (LFW pairs.txt, CFP FF and FP) of the test folds; written as JSON.",
    )
    split.add_argument("--root", type=Path, default=DATASETS_ROOT)
    split.add_argument("--folds", default="6-10", help="test folds (default 6-10)")
    split.add_argument("--out", type=Path, default=Path("configs/split-lfw-cfp.json"))
    split.set_defaults(func=_split)

    pack = data.add_parser(
        "pack",
        help="pack the aligned training images into one file",
        description="Every training image (people with >= --min-images aligned images) as "
        "JPEG bytes, labels and names in one .npz, for training elsewhere.",
    )
    pack.add_argument("--aligned", type=Path, default=ALIGNED_ROOT)
    pack.add_argument("--split", type=Path, default=Path("configs/split-lfw-cfp.json"))
    pack.add_argument("--out", type=Path, default=TRAIN_PACK)
    pack.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    pack.add_argument("--min-images", type=int, default=2)
    pack.add_argument(
        "--labelled-extra",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a prepared folder whose identity folders label its images (e.g. att=cache/aligned/att)",
    )
    pack.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a prepared folder of unlabelled faces (for distillation), e.g. "
        "fairface=cache/aligned/fairface; images near a test person are dropped",
    )
    pack.add_argument(
        "--teacher",
        action="append",
        default=[],
        metavar="NAME",
        help="store this teacher's embeddings of every image (sface, dlib); repeatable",
    )
    pack.add_argument(
        "--cache",
        type=Path,
        default=Path("cache/teachers"),
        help="where teacher embeddings are cached between runs (default cache/teachers)",
    )
    pack.set_defaults(func=_pack)


def _split(args: argparse.Namespace) -> int:
    from faceobfuscator.research.data.split import compute_split, parse_folds, write_split

    split = compute_split(args.root, test_folds=parse_folds(args.folds))
    write_split(split, args.out)
    print(json.dumps({"out": str(args.out), **split.to_dict()["counts"]}))
    return 0


def _pack(args: argparse.Namespace) -> int:
    from faceobfuscator.research.training.data import write_pack

    summary = write_pack(
        args.out,
        aligned_root=args.aligned,
        split_path=args.split,
        quality=args.quality,
        min_images=args.min_images,
        labelled_extra=named_paths(args.labelled_extra),
        extra=named_paths(args.extra),
        teachers=args.teacher,
        cache_dir=args.cache,
        progress=True,
    )
    print(json.dumps(summary, indent=2))
    return 0
