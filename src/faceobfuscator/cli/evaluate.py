"""``faceobf eval``: the verification benchmarks of a model directory (``verify``), the
results table of several (``results``), the paper's Table 3 (``table3``) and training
curves (``curves``)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from faceobfuscator.cli._groups import command_group, named_paths
from faceobfuscator.research.data.paths import ALIGNED_ROOT, DATASETS_ROOT

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
        default=Path(os.environ.get("FACEOBF_DATASETS", str(DATASETS_ROOT))),
        help="datasets folder (for the pair lists)",
    )
    v.add_argument("--aligned", type=Path, default=ALIGNED_ROOT)
    v.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    v.add_argument("--batch-size", type=int, default=128)
    v.add_argument(
        "--bf16", action="store_true", help="bf16 autocast of the network (about 2.5x on CPU)"
    )
    v.add_argument("--seed", type=int, default=None, help="seed of the protection draws")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    v.set_defaults(func=_verify)

    r = group.add_parser(
        "results",
        help="verification table of several models (Markdown and JSON)",
        description="Runs `eval verify` for every model and benchmark (and, for models "
        "with a recovery step, the no-recovery ablation) and writes a Markdown table.",
    )
    r.add_argument("--models", type=Path, nargs="+", required=True, help="model directories")
    r.add_argument("--benchmarks", default="lfw,cfp-ff,cfp-fp")
    r.add_argument("--no-ablation", action="store_true", help="skip the no-recovery rows")
    _table_options(r, v.get_default("root"), "verification")
    r.set_defaults(func=_results)

    t = group.add_parser(
        "table3",
        help="the paper's Table 3 for every scheme with a model (Markdown and JSON)",
        description="Accuracy (LFW, CFP-FF, CFP-FP) and TAR at FAR 1e-3 by `eval verify`, "
        "storage per face, client time per face (batched and single) and the leakage "
        "verdicts of results/table4.json when present.",
    )
    t.add_argument(
        "--models", type=Path, nargs="+", default=None, help="model directories (default: models/*)"
    )
    t.add_argument("--benchmarks", default="lfw,cfp-ff,cfp-fp")
    t.add_argument("--folds", default=None, help="e.g. 6-10 (the default)")
    t.add_argument("--table4", type=Path, default=Path("results/table4.json"))
    t.add_argument("--timing-batch", type=int, default=64, help="faces per batched call")
    _table_options(t, v.get_default("root"), "table3")
    t.set_defaults(func=_table3)

    c = group.add_parser(
        "curves",
        help="training loss of several runs in one figure (PNG)",
        description="Training loss against images seen, one line per run, from each run's "
        "metrics.jsonl (LABEL=RUN_DIR).",
    )
    c.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    c.add_argument("--out", type=Path, required=True, help="the PNG to write")
    c.add_argument("--title", default="")
    c.set_defaults(func=_curves)


def _table_options(p: argparse.ArgumentParser, root: Path, name: str) -> None:
    """The options that the table commands share; outputs results/NAME.{json,md}."""
    p.add_argument("--root", type=Path, default=root)
    p.add_argument("--aligned", type=Path, default=ALIGNED_ROOT)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0, help="seed of the protection draws")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of the network")
    p.add_argument("--out", type=Path, default=Path(f"results/{name}.json"))
    p.add_argument("--markdown", type=Path, default=Path(f"results/{name}.md"))


def _write_tables(json_path: Path, data: object, markdown_path: Path, markdown: str) -> None:
    for path, text in ((json_path, json.dumps(data, indent=2)), (markdown_path, markdown)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + ("" if text.endswith("\n") else "\n"))


def _verify(args: argparse.Namespace) -> int:
    from faceobfuscator.research.data.split import parse_folds
    from faceobfuscator.research.evaluation.benchmarks import run_verification

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
        bf16=args.bf16,
        progress=True,
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


def _results(args: argparse.Namespace) -> int:
    from faceobfuscator.recognition.modeldir import read_model_config
    from faceobfuscator.recognition.schemes import get_scheme
    from faceobfuscator.research.evaluation.benchmarks import results_table, run_verification

    rows = []
    for model in args.models:
        config = read_model_config(model)
        has_recovery = get_scheme(config["scheme"], _protocol(config)).has_recovery
        settings = [True] + ([False] if has_recovery and not args.no_ablation else [])
        for bench in args.benchmarks.split(","):
            for recovery in settings:
                result = run_verification(
                    model,
                    bench,
                    recovery=recovery,
                    datasets_root=args.root,
                    aligned_root=args.aligned,
                    device=args.device,
                    seed=args.seed,
                    bf16=args.bf16,
                    progress=True,
                )
                rows.append(result.to_dict())
                print(
                    f"{model.name} {bench} recovery={recovery}: "
                    f"{100 * result.accuracy_mean:.2f} +- {100 * result.accuracy_std:.2f} "
                    f"({result.missing_pairs} pairs missing)",
                    flush=True,
                )
    _write_tables(args.out, rows, args.markdown, results_table(rows))
    print(results_table(rows))
    return 0


def _table3(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from faceobfuscator.research.data.split import parse_folds
    from faceobfuscator.research.evaluation.table3 import (
        model_directories,
        run_table3,
        table3_markdown,
    )

    results = run_table3(
        args.models or model_directories("models"),
        benchmarks=tuple(args.benchmarks.split(",")),
        folds=parse_folds(args.folds) if args.folds else None,
        timing_batch=args.timing_batch,
        table4=args.table4,
        datasets_root=args.root,
        aligned_root=args.aligned,
        device=args.device,
        seed=args.seed,
        bf16=args.bf16,
    )
    command = "faceobf " + shlex.join(sys.argv[1:])
    results["command"] = command
    markdown = table3_markdown(results, command=command)
    _write_tables(args.out, results, args.markdown, markdown)
    print(markdown)
    return 0


def _protocol(config: dict):
    from faceobfuscator.protocol.config import ProtocolConfig

    return ProtocolConfig.from_dict(config["protocol"])


def _curves(args: argparse.Namespace) -> int:
    from faceobfuscator.research.training.report import plot_runs

    runs = named_paths(args.runs, form="LABEL=RUN_DIR")
    logs: dict[str, str | Path] = {label: run / "metrics.jsonl" for label, run in runs.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(plot_runs(logs, args.out, title=args.title))
    return 0
