"""``faceobf privacy run CONFIG``: the reconstruction-attack evaluation."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "privacy", help="privacy evaluation: reconstruction attacks on leaked features"
    )
    sub = parser.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    run = sub.add_parser(
        "run", help="train the attacks of a configuration, score them, write the reports"
    )
    run.add_argument("config", help="privacy configuration JSON (see configs/privacy-*.json)")
    run.add_argument("--out", help="write the reports here instead of the config's out_dir")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..privacy import PrivacyConfig, run_privacy

    cfg = PrivacyConfig.load(args.config)
    if args.out:
        cfg = dataclasses.replace(cfg, out_dir=args.out)
    run_privacy(cfg, log=lambda line: print(line, flush=True))
    return 0
