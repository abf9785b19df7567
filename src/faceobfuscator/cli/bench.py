"""``faceobf bench ...``: speed measurements that print one JSON object (and a table):
``transform``, ``training``, ``server`` and ``security``."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from faceobfuscator.research.data.paths import DATASETS_ROOT


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="speed benchmarks")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="KIND")
    t = kinds.add_parser("transform", help="client transform throughput and photo latency")
    t.add_argument("--root", type=Path, default=DATASETS_ROOT)
    t.add_argument("--photos", type=int, default=60, help="LFW photos timed for latency")
    t.add_argument("--json", action="store_true", help="print only the JSON object")
    t.add_argument("--out", type=Path, help="also write the JSON here")
    t.set_defaults(func=_transform)

    tr = kinds.add_parser("training", help="training and inference images/s per backbone")
    tr.add_argument("--backbones", nargs="+", default=["mobilefacenet", "iresnet18", "iresnet50"])
    tr.add_argument("--schemes", nargs="+", default=["arcface", "arcface-fd", "faceobfuscator"])
    tr.add_argument("--batch", type=int, default=32)
    tr.add_argument("--steps", type=int, default=3)
    tr.add_argument("--device", default="cpu")
    tr.add_argument(
        "--variants",
        nargs="+",
        default=["fp32", "bf16+cl"],
        help="fp32, bf16 (autocast), cl (channels-last), bf16+cl: each timed (default fp32 bf16+cl)",
    )
    tr.add_argument("--out", type=Path, help="also write the JSON here")
    tr.set_defaults(func=_training)

    d = kinds.add_parser(
        "detectors", help="faces found and aligned on LFW and CFP, and latency, per detector"
    )
    d.add_argument("--root", type=Path, default=DATASETS_ROOT)
    d.add_argument("--detector", default="yunet", help="yunet, hog or cnn")
    d.add_argument("--sample", type=int, default=None, help="images per set (default all)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", type=Path, help="also write the JSON here")
    d.set_defaults(func=_detectors)

    ph = kinds.add_parser("photo", help="photo -> payload latency and memory by photo size")
    ph.add_argument("--root", type=Path, default=DATASETS_ROOT)
    ph.add_argument("--repeats", type=int, default=30)
    ph.add_argument("--out", type=Path, help="also write the JSON here")
    ph.set_defaults(func=_photo)

    _add_server_parser(kinds)
    _add_security_parser(kinds)


def _emit(result: object, out: Path | None) -> int:
    text = json.dumps(result, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)
    return 0


def _detectors(args: argparse.Namespace) -> int:
    from faceobfuscator.research.bench.detectors import detector_comparison

    result = detector_comparison(
        args.root, detector=args.detector, sample=args.sample, seed=args.seed
    )
    return _emit(result, args.out)


def _photo(args: argparse.Namespace) -> int:
    from faceobfuscator.client.images import load_image
    from faceobfuscator.research.bench.detectors import photo_latency

    face = load_image(args.root / "lfw" / "Tony_Blair" / "Tony_Blair_0001.jpg")
    return _emit(photo_latency(face, repeats=args.repeats), args.out)


def _transform(args: argparse.Namespace) -> int:
    from faceobfuscator.errors import InputError
    from faceobfuscator.protocol.config import ProtocolConfig
    from faceobfuscator.research.bench.transform import transform_benchmark

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

    from faceobfuscator.errors import ConfigError
    from faceobfuscator.research.bench.training import training_throughput

    known = {"fp32", "bf16", "cl", "bf16+cl"}
    if set(args.variants) - known:
        raise ConfigError(
            f"unknown variants {sorted(set(args.variants) - known)}; known: {sorted(known)}"
        )
    combos = [(b, s, v) for b in args.backbones for s in args.schemes for v in args.variants]
    rows = []
    for backbone, scheme, variant in tqdm(combos, desc="bench training", unit="run"):
        row = training_throughput(
            backbone,
            scheme,
            args.batch,
            args.steps,
            args.device,
            amp="bf16" if "bf16" in variant else "none",
            channels_last="cl" in variant,
        )
        rows.append({**row, "variant": variant})
    result = {"device": args.device, "batch": args.batch, "steps": args.steps, "runs": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{'backbone':<14} {'scheme':<15} {'variant':<8} {'params':>10} "
        f"{'train img/s':>12} {'infer img/s':>12}"
    )
    for r in rows:
        print(
            f"{r['backbone']:<14} {r['scheme']:<15} {r['variant']:<8} {r['params']:>10,} "
            f"{r['train_images_per_s']:>12.1f} {r['inference_images_per_s']:>12.1f}"
        )
    return 0


def _add_server_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("server", help="recognition server: concurrent clients and 1:N search")
    p.add_argument("--model", type=Path, help="model directory (default: a random model)")
    p.add_argument(
        "--sizes", type=int, nargs="*", default=[1000, 100_000], help="none: no load rows"
    )
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--processes", type=int, default=1, help="API processes on each SQLite gallery")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per gallery")
    p.add_argument("--enrol-share", type=float, default=0.2)
    p.add_argument("--runtime", choices=["fp32", "bf16", "bf16-compiled"], default="fp32")
    p.add_argument("--batch-window-ms", type=float, default=0.0)
    p.add_argument(
        "--network-lanes", type=int, default=1, help="server setting FACEOBF_NETWORK_LANES"
    )
    p.add_argument(
        "--torch-threads", type=int, default=0, help="server setting FACEOBF_TORCH_THREADS"
    )
    p.add_argument(
        "--runtime-bench",
        type=int,
        default=0,
        metavar="N",
        help="compare the fp32 and bf16 runtimes on N synthetic payloads (0 skips it)",
    )
    p.add_argument("--search-size", type=int, default=1_000_000, help="0 skips it")
    p.add_argument(
        "--ann-sizes",
        type=int,
        nargs="*",
        default=[1_000_000],
        help="approximate (faiss) against exact search at these sizes; none skips it",
    )
    p.add_argument("--ann-dims", type=int, nargs="+", default=[128, 512])
    p.add_argument(
        "--ann-spectra",
        type=float,
        nargs="*",
        default=[0.0, 1.0],
        help="0: isotropic synthetic subjects; 1: power-law spectrum; none: only --ann-fit",
    )
    p.add_argument("--ann-nprobes", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--ann-kinds", nargs="+", choices=["pq", "ivf"], default=["pq"])
    p.add_argument("--ann-shortlists", type=int, nargs="+", default=[100, 300, 1000])
    p.add_argument(
        "--ann-fit",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="also a gallery fitted to real embeddings: EMBEDDINGS_NPY PACK_NPZ (e.g. "
        "cache/yunet/lfw.sface.npy cache/yunet/lfw.npz), or one pack made by `faceobf data "
        "pack --teacher sface` (e.g. cache/experiments/train-pack-labelled.npz)",
    )
    p.add_argument("--ann-per-subject", type=int, default=5)
    p.add_argument("--ann-queries", type=int, default=300, help="probes of each ANN row")
    p.add_argument(
        "--startup-sizes",
        type=int,
        nargs="*",
        default=[],
        help="start-up from the encrypted embedding cache at these sizes (at --ann-dims)",
    )
    p.add_argument("--pg-url", help="an empty PostgreSQL database for the end-to-end rows")
    p.add_argument("--pg-size", type=int, default=1_000_000)
    p.add_argument("--pg-processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--workdir", type=Path, help="folder for the temporary galleries")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.set_defaults(func=_server)


def _server(args: argparse.Namespace) -> int:
    from faceobfuscator.research.bench.server import run_server_bench

    if args.ann_fit is not None and len(args.ann_fit) > 2:
        from faceobfuscator.errors import InputError

        raise InputError("--ann-fit takes EMBEDDINGS_NPY PACK_NPZ, or one teacher pack")

    result = run_server_bench(
        model_dir=args.model,
        sizes=tuple(args.sizes),
        clients=args.clients,
        duration_s=args.duration,
        enrol_share=args.enrol_share,
        search_size=args.search_size,
        processes=args.processes,
        ann_sizes=tuple(args.ann_sizes),
        ann_dims=tuple(args.ann_dims),
        ann_spectra=tuple(args.ann_spectra),
        ann_nprobes=tuple(args.ann_nprobes),
        ann_kinds=tuple(args.ann_kinds),
        ann_shortlists=tuple(args.ann_shortlists),
        ann_fit=None if args.ann_fit is None else tuple(args.ann_fit),
        ann_per_subject=args.ann_per_subject,
        ann_queries=args.ann_queries,
        startup_sizes=tuple(args.startup_sizes),
        runtime_bench_payloads=args.runtime_bench,
        pg_url=args.pg_url,
        pg_size=args.pg_size,
        pg_processes=tuple(args.pg_processes),
        server_env={
            "FACEOBF_RUNTIME": args.runtime,
            "FACEOBF_BATCH_WINDOW_MS": str(args.batch_window_ms),
            "FACEOBF_NETWORK_LANES": str(args.network_lanes),
            "FACEOBF_TORCH_THREADS": str(args.torch_threads),
        },
        workdir=args.workdir,
        progress=lambda msg: print(f"bench: {msg}", file=sys.stderr),
    )
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    runs = result["galleries"] + result.get("postgres", {}).get("runs", [])
    return 1 if any(g["errors"] for g in runs) else 0


def _add_security_parser(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "security",
        help="added latency (p50, p99) and bytes of sealed payloads and encrypted templates",
    )
    p.add_argument(
        "--db", help="database of the challenges (default: a temporary SQLite file, FULL sync)"
    )
    p.add_argument("--n", type=int, default=500, help="timed repetitions of each step")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.set_defaults(func=_security)


def _security(args: argparse.Namespace) -> int:
    from faceobfuscator.protocol.config import ProtocolConfig
    from faceobfuscator.research.bench.security import security_costs
    from faceobfuscator.server.storage import open_storage

    with tempfile.TemporaryDirectory() as tmp:
        storage = open_storage(args.db or f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            result = security_costs(storage, ProtocolConfig(), n=args.n)
        finally:
            storage.close()
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0
