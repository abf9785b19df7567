"""The paper's Table 3 for every scheme with a model directory (``faceobf eval table3``):
verification accuracy, TAR, storage, client time and the leakage verdicts of Table 4.

Columns, per model directory:

- LFW, CFP-FF, CFP-FP accuracy, mean +- std over folds 6-10 (fractions in the JSON, % in
  the Markdown), and TAR at FAR 1e-3 with the threshold set on every non-mated comparison
  among each benchmark's images (the protocol's own impostor pairs' TAR is in the JSON):
  :func:`~faceobfuscator.research.evaluation.benchmarks.run_verification`, the code of
  ``faceobf eval verify`` (face plus mirror, each with a fresh protection).
- Storage: kilobytes per face of what the server keeps of what a client sent
  (:meth:`~faceobfuscator.recognition.schemes.Scheme.stored`) as float32; the embedding
  the server derives is not counted (it is the same for every scheme of one backbone).
- Client time: milliseconds per face of the scheme's client step
  (:meth:`~faceobfuscator.recognition.schemes.Scheme.client_features`, aligned face in,
  tensor to send out; alignment and payload encoding left out) on this process's threads:
  batched (``batch`` faces per call, p50 over calls divided by ``batch``) and single (one
  face per call, p50).
- Channel and database leakage: the ``channel`` (scenario C) and ``database`` (scenario D)
  verdicts of ``results/table4.json`` (``faceobf privacy table4``) when it exists and
  holds the scheme; else "-".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.recognition.modeldir import load_model
from faceobfuscator.recognition.schemes import Scheme
from faceobfuscator.research.bench.timing import latency_summary
from faceobfuscator.research.data.paths import ALIGNED_ROOT, DATASETS_ROOT, TEST_FOLDS
from faceobfuscator.research.evaluation.benchmarks import load_benchmark, run_verification

__all__ = [
    "BENCHMARKS",
    "client_time",
    "storage_kb",
    "leakage_verdicts",
    "model_directories",
    "run_table3",
    "table3_markdown",
]

BENCHMARKS = ("lfw", "cfp-ff", "cfp-fp")


def storage_kb(scheme: Scheme, faces: torch.Tensor, *, generator: torch.Generator) -> float:
    """Kilobytes (1024 bytes) per face of ``scheme.stored`` of what the client sends for
    the uint8 faces ``(N, S, S, 3)``, counted as float32."""
    with torch.no_grad():
        stored = scheme.stored(scheme.client_features(faces, generator=generator))
    return stored[0].numel() * 4 / 1024


def client_time(
    scheme: Scheme,
    faces: torch.Tensor,
    *,
    generator: torch.Generator,
    batch: int = 64,
    repeats: int = 5,
    singles: int = 32,
) -> dict[str, Any]:
    """Milliseconds per face of the client step on uint8 faces ``(N, S, S, 3)``
    (``N >= batch``): ``batched`` (p50 over ``repeats`` calls of ``batch`` faces, per face)
    and ``single`` (p50 over ``singles`` one-face calls), with their latency summaries,
    after one warm-up call of each.

    Raises:
        ConfigError: fewer than ``batch`` faces.
    """
    if faces.shape[0] < batch:
        raise ConfigError(f"client timing needs {batch} faces, got {faces.shape[0]}")

    def timed(x: torch.Tensor) -> float:
        t = time.perf_counter()
        scheme.client_features(x, generator=generator)
        return (time.perf_counter() - t) * 1000

    with torch.no_grad():
        timed(faces[:batch])
        per_batch = [timed(faces[:batch]) for _ in range(repeats)]
        timed(faces[:1])
        single = [timed(faces[i : i + 1]) for i in range(min(singles, faces.shape[0]))]
    b, s = latency_summary(per_batch), latency_summary(single)
    return {
        "batched_ms_per_face": round(b["p50_ms"] / batch, 4),
        "single_ms_per_face": s["p50_ms"],
        "batch": batch,
        "threads": torch.get_num_threads(),
        "batched_calls": b,
        "single_calls": s,
    }


def leakage_verdicts(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``verdicts`` of a Table 4 JSON (scheme -> ``channel``/``database`` ->
    ``"protected"`` or ``"leaks"``), or ``{}`` when the file does not exist.

    Raises:
        ConfigError: the file exists but is not a Table 4 JSON.
    """
    p = Path(path)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p} is not valid JSON: {exc}") from None
    verdicts = data.get("verdicts") if isinstance(data, dict) else None
    if not isinstance(verdicts, dict):
        raise ConfigError(f"{p} has no 'verdicts'; write it with `faceobf privacy table4`")
    return verdicts


def model_directories(root: str | Path) -> list[Path]:
    """Every model directory directly under ``root`` (a folder holding ``config.json``),
    sorted by name."""
    return sorted(p.parent for p in Path(root).glob("*/config.json"))


def run_table3(
    models: list[Path],
    *,
    benchmarks: tuple[str, ...] = BENCHMARKS,
    folds: tuple[int, ...] | None = None,
    table4: str | Path = "results/table4.json",
    datasets_root: str | Path = DATASETS_ROOT,
    aligned_root: str | Path = ALIGNED_ROOT,
    device: str = "cpu",
    seed: int = 0,
    bf16: bool = False,
    timing_batch: int = 64,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Table 3 for ``models`` (model directories): one row each (see the module), and the
    settings. ``folds``: the benchmarks' folds (default 6-10). Faces for storage and timing:
    the first ``timing_batch`` images of the first benchmark's first fold.

    Raises:
        ConfigError: no models, or an unreadable model directory or Table 4 file.
    """
    if not models:
        raise ConfigError("Table 3 needs at least one model directory")
    verdicts = leakage_verdicts(table4)
    faces = load_benchmark(
        benchmarks[0],
        folds=(folds or TEST_FOLDS)[:1],
        datasets_root=datasets_root,
        aligned_root=aligned_root,
    ).faces[: max(timing_batch, 1)]
    rows = []
    for directory in models:
        model = load_model(directory, device="cpu")
        g = torch.Generator().manual_seed(seed)
        row: dict[str, Any] = {
            "model": str(directory),
            "scheme": model.scheme.name,
            "backbone": model.backbone_name,
            "storage_kb_per_face": storage_kb(model.scheme, faces[:2], generator=g),
            "client_time": client_time(model.scheme, faces, generator=g, batch=timing_batch),
            "leakage": verdicts.get(model.scheme.name, {}),
            "verification": {},
        }
        for bench in benchmarks:
            result = run_verification(
                directory,
                bench,
                folds=folds,
                datasets_root=datasets_root,
                aligned_root=aligned_root,
                device=device,
                seed=seed,
                bf16=bf16,
            )
            row["verification"][bench] = result.to_dict()
            log(
                f"{directory} {bench}: {100 * result.accuracy_mean:.2f} +- "
                f"{100 * result.accuracy_std:.2f}"
            )
        rows.append(row)
    return {
        "benchmarks": list(benchmarks),
        "folds": list(folds or TEST_FOLDS),
        "table4": str(table4) if verdicts else None,
        "seed": seed,
        "bf16": bf16,
        "device": device,
        "rows": rows,
    }


def _accuracy(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    return f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}"


def _tar(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    big = r.get("extra", {}).get("tar_all_non_mated")
    return f"{100 * (big or r['tar_at_far'])['tar']:.1f}"


def table3_markdown(results: dict[str, Any], *, command: str = "faceobf eval table3") -> str:
    """Table 3 as Markdown (accuracy and TAR in %), with the command and the definitions."""
    benches = results["benchmarks"]
    head = (
        ["model", "scheme"]
        + [f"{b} acc." for b in benches]
        + [f"{b} TAR" for b in benches]
        + ["storage KB/face", "client ms/face batched", "single", "channel", "database"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results["rows"]:
        v, t, leak = r["verification"], r["client_time"], r["leakage"]
        cells = (
            [r["model"], r["scheme"]]
            + [_accuracy(v.get(b)) for b in benches]
            + [_tar(v.get(b)) for b in benches]
            + [
                f"{r['storage_kb_per_face']:.1f}",
                f"{t['batched_ms_per_face']:.3f}",
                f"{t['single_ms_per_face']:.3f}",
                leak.get("channel", "-"),
                leak.get("database", "-"),
            ]
        )
        lines.append("| " + " | ".join(cells) + " |")
    threads = {r["client_time"]["threads"] for r in results["rows"]}
    source = results["table4"] or "no Table 4 results yet (`faceobf privacy table4`)"
    lines += [
        "",
        f"Made by `{command}` (seed {results['seed']}, bf16 network: {results['bf16']}). "
        f"Accuracy: mean ± std over folds {results['folds']}, %. TAR: % at FAR 1e-3, threshold on every "
        "non-mated comparison among the benchmark's images. Storage: float32 kilobytes per "
        "face of what the server keeps of what was sent. Client time: the scheme's client "
        f"step (aligned face -> tensor sent) on {sorted(threads)} CPU thread(s), p50, per "
        f"face. Channel / database leakage: verdicts of {source}.",
    ]
    return "\n".join(lines) + "\n"
