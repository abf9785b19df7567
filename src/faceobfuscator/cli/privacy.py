"""``faceobf privacy``: the reconstruction-attack evaluation.

- ``run CONFIG``: everything, on this machine;
- ``pack CONFIG DIR``: the run's faces into a folder, for a machine without the datasets;
- ``reconstruct CONFIG DIR``: train and reconstruct only (no dlib needed), saving to DIR;
- ``score CONFIG DIR``: score reconstructions saved by ``reconstruct`` and write reports;
- ``replay CONFIG``: replay acceptance against plain and sealed deployments, and the
  reconstruction attack on a sealed deployment's leaks (``replay_sealed.*``);
- ``table4 CONFIG``: Table 4 over every scheme of the config with a model directory
  (``results/table4.{json,md}``, ``docs/figure9_<dataset>.png``; ``--out`` moves the table).
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "privacy", help="privacy evaluation: reconstruction attacks on leaked features"
    )
    sub = parser.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    specs = [
        ("run", _run, "train the attacks of a configuration, score them, write the reports", None),
        (
            "pack",
            _pack,
            "write the run's faces to a folder (for a machine without datasets)",
            "folder",
        ),
        ("reconstruct", _reconstruct, "train and reconstruct only; save to a folder", "folder"),
        ("score", _score, "score reconstructions saved by `reconstruct`; write reports", "folder"),
        (
            "replay",
            _replay,
            "replay attacks on plain and sealed deployments; attacks on sealed leaks",
            None,
        ),
        ("table4", _table4, "Table 4 for every scheme with a model; Figure 9; verdicts", None),
    ]
    for name, func, help_text, folder in specs:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("config", help="privacy configuration JSON (see configs/privacy-*.json)")
        if folder:
            p.add_argument(folder, help="the folder to write or read")
        p.add_argument("--out", help="write the reports here instead of the config's out_dir")
        p.add_argument("--pack", help="read the faces from this pack instead of the datasets")
        p.add_argument("--device", help="torch device for training, e.g. cuda")
        p.set_defaults(func=func)
    judge = sub.add_parser(
        "judge",
        help="measure the dlib judge's chip map for the client's aligner and its LFW accuracy",
    )
    judge.add_argument("--root", default=None, help="datasets folder (../shared/datasets)")
    judge.add_argument("--aligned", default=None, help="aligned crops (cache/aligned)")
    judge.add_argument("--images", type=int, default=300, help="LFW photos for the chip map")
    judge.add_argument("--pairs", type=int, default=600, help="LFW test pairs per chip map")
    judge.add_argument("--out", default="results/privacy", help="folder for judge.json/.md")
    judge.set_defaults(func=_judge)


def _config(args: argparse.Namespace):
    import dataclasses

    from faceobfuscator.research.privacy import PrivacyConfig

    cfg = PrivacyConfig.load(args.config)
    changes = {"out_dir": args.out, "pack": args.pack, "device": args.device}
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v})


def _log(line: str) -> None:
    print(line, flush=True)


def _run(args: argparse.Namespace) -> int:
    from faceobfuscator.research.privacy import run_privacy

    run_privacy(_config(args), log=_log)
    return 0


def _pack(args: argparse.Namespace) -> int:
    from faceobfuscator.research.privacy.pack import select_faces, write_pack

    out = write_pack(select_faces(_config(args), _log), args.folder)
    print(f"wrote {out}")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from faceobfuscator.research.privacy.run import load_faces_for, reconstruct_all

    cfg = _config(args)
    reconstruct_all(cfg, load_faces_for(cfg, _log), log=_log).save(args.folder)
    print(f"wrote {args.folder}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from faceobfuscator.research.privacy.run import Reconstructions, run_privacy

    run_privacy(_config(args), log=_log, reconstructions=Reconstructions.load(args.folder))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from faceobfuscator.research.privacy.run_replay import run_replay

    run_replay(_config(args), log=_log)
    return 0


def _table4(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from faceobfuscator.research.privacy.table4 import run_table4

    command = shlex.join(["faceobf", *sys.argv[1:]])
    run_table4(_config(args), out_dir=args.out or "results", command=command, log=_log)
    return 0


def _judge(args: argparse.Namespace) -> int:
    from faceobfuscator.research.data.paths import ALIGNED_ROOT, DATASETS_ROOT
    from faceobfuscator.research.privacy.judge import (
        calibrate_judge,
        judge_table,
        write_judge_report,
    )

    result = calibrate_judge(
        datasets_root=args.root or DATASETS_ROOT,
        aligned_root=args.aligned or ALIGNED_ROOT,
        images=args.images,
        pairs=args.pairs,
        log=_log,
    )
    path = write_judge_report(result, args.out)
    print(judge_table(result), end="")
    print(f"wrote {path}")
    return 0
