"""``faceobf privacy linkage CONFIG``: linkage attacks (a leaked payload -> who the person
is), unlinkability D<->sys across two deployments and irreversibility at the independent
recognizer's FMR 0.1% (issue 14). It joins the ``privacy`` group that
:mod:`faceobfuscator.cli.privacy` creates, with its own configuration
(``configs/privacy-linkage-*.json``)."""

from __future__ import annotations

import argparse

from faceobfuscator.cli._groups import command_group

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = command_group(
        subparsers, "privacy", "privacy evaluation: attacks on leaked features", "privacy_command"
    )
    p = sub.add_parser(
        "linkage", help="linkage attacks, unlinkability and irreversibility at FMR 0.1%%"
    )
    p.add_argument("config", help="linkage configuration JSON (configs/privacy-linkage-*.json)")
    p.add_argument("--out", help="write the reports here instead of the config's out_dir")
    p.add_argument("--device", help="torch device for training, e.g. cuda")
    p.add_argument(
        "--report",
        metavar="JSON",
        help="only write the Markdown table and figure again from a linkage.json",
    )
    p.set_defaults(func=_linkage)


def _linkage(args: argparse.Namespace) -> int:
    import dataclasses

    if args.report:
        import json
        from pathlib import Path

        from faceobfuscator.research.privacy.linkage_report import write_linkage_reports

        results = json.loads(Path(args.report).read_text())
        print(f"wrote {write_linkage_reports(results, args.out or Path(args.report).parent)}")
        return 0

    from faceobfuscator.research.privacy.linkage_config import LinkageConfig
    from faceobfuscator.research.privacy.linkage_run import run_linkage

    cfg = LinkageConfig.load(args.config)
    changes = {"out_dir": args.out, "device": args.device}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v})
    run_linkage(cfg, log=lambda line: print(line, flush=True))
    return 0
