"""``faceobf experiment NAME CONFIG``: one of the paper's own experiments (issue 13)."""

from __future__ import annotations

import argparse

__all__ = ["register"]

#: The experiment names, kept here so that ``faceobf --help`` needs no torch; a test
#: checks them against the library's registry.
NAMES = (
    "base-b",
    "channel-count",
    "channel-importance",
    "components",
    "single-channels",
    "uv-range",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "experiment",
        help="run one of the paper's own experiments (JSON, table, figure)",
        description="Trains the experiment's models with its recipe (reusing models and "
        "privacy results of equal settings), verifies them and runs the privacy harness; "
        "writes results.json, table.md and figure.png under the output folder "
        "(default results/experiments/NAME/). See configs/experiments/NAME-{cpu,gpu}.json.",
    )
    p.add_argument("name", choices=NAMES, help="the experiment")
    p.add_argument("config", help="experiment configuration JSON")
    p.add_argument("--out", help="write here instead of the configuration's out_dir")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override the device")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from faceobfuscator.research.experiments import load_experiment_config, run_experiment

    config = load_experiment_config(args.config)
    changes = {"out_dir": args.out, "device": args.device}
    config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v})
    run_experiment(args.name, config, log=lambda s: print(s, flush=True))
    return 0
