"""``faceobf eval verify``: the verification benchmarks of a model directory."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ._groups import command_group

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "eval", "evaluate models", "eval_command")
    v = group.add_parser(
        "verify",
        help="k-fold verification accuracy and TAR at FAR=1e-3",
        description="Face plus mirror (each with a fresh protection), cosine, the threshold "
        "chosen on the other folds; LFW and CFP use folds 6-10 of their protocols unless "
        "--folds says otherwise, bin:PATH packs their 10 contiguous folds.",
    )
    v.add_argument("--model", type=Path, required=True, help="model directory")
    v.add_argument(
        "--benchmark", required=True, help="lfw, cfp-ff, cfp-fp or bin:PATH (insightface pack)"
    )
    v.add_argument("--folds", default=None, help="e.g. 6-10 (default: 6-10; bin: 1-10)")
    v.add_argument("--no-recovery", action="store_true", help="Table 5 ablation: no recovery")
    v.add_argument("--no-flip", action="store_true", help="embed the face alone")
    v.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ.get("FACEOBF_DATASETS", "../shared/datasets")),
        help="datasets folder (for the pair lists)",
    )
    v.add_argument("--aligned", type=Path, default=Path("cache/aligned"))
    v.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    v.add_argument("--batch-size", type=int, default=128)
    v.add_argument("--seed", type=int, default=None, help="seed of the protection draws")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    v.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from ..split import parse_folds
    from ..verification import run_verification

    result = run_verification(
        args.model,
        args.benchmark,
        folds=parse_folds(args.folds) if args.folds else None,
        recovery=not args.no_recovery,
        flip=not args.no_flip,
        datasets_root=args.root,
        aligned_root=args.aligned,
        device=args.device,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    d = result.to_dict()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(d, indent=2) + "\n")
    if args.json:
        print(json.dumps(d))
        return 0
    print(
        f"{d['benchmark']}: accuracy {100 * d['accuracy_mean']:.2f} +- "
        f"{100 * d['accuracy_std']:.2f} over folds {d['folds']} ({d['n_pairs']} pairs, "
        f"{d['missing_pairs']} missing); TAR {100 * d['tar_at_far']['tar']:.2f} at FAR "
        f"{d['far_target']:g} ({d['tar_at_far']['n_impostor']} impostor pairs)"
    )
    return 0
