"""The paper's own experiments, each one command (``faceobf experiment NAME CONFIG``,
issue 13): every experiment trains with one recipe, verifies on the benchmarks and
attacks with the privacy harness, and writes ``results.json``, ``table.md`` and
``figure.png`` under its output folder (default ``results/experiments/<name>/``).

- ``channel-importance``: Algorithm 3, Appendix A, Figures 4 and 12 (:mod:`.importance`);
- ``single-channels``: Table 2; ``channel-count``: Figures 5 and 8; ``uv-range``:
  Figure 7; ``base-b``: Appendix D, Table 6, Figure 13; ``components``: Figure 11,
  Table 5 (:mod:`.sweeps`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.registry import Registry
from faceobfuscator.research.experiments.config import ExperimentConfig, load_experiment_config
from faceobfuscator.research.experiments.importance import (
    plot_importance,
    removal_order,
    run_channel_importance,
)
from faceobfuscator.research.experiments.report import importance_table, plot_sweep, sweep_table
from faceobfuscator.research.experiments.runner import Runner
from faceobfuscator.research.experiments.sweeps import (
    run_base_b,
    run_channel_count,
    run_components,
    run_single_channels,
    run_uv_range,
)

__all__ = [
    "ExperimentConfig",
    "list_experiments",
    "load_experiment_config",
    "removal_order",
    "run_experiment",
]

_EXPERIMENTS: Registry[Callable[[Runner], dict[str, Any]]] = Registry("experiment")
_TITLES = {
    "channel-importance": "Channel importance (Algorithm 3, Figure 12)",
    "single-channels": "Recognition from one DCT channel (Table 2)",
    "channel-count": "How many channels (Figures 5 and 8)",
    "uv-range": "Range of u and v (Figure 7)",
    "base-b": "The base b (Appendix D, Table 6, Figure 13)",
    "components": "Components (Figure 11, Table 5)",
}
for _name, _run in (
    ("channel-importance", run_channel_importance),
    ("single-channels", run_single_channels),
    ("channel-count", run_channel_count),
    ("uv-range", run_uv_range),
    ("base-b", run_base_b),
    ("components", run_components),
):
    _EXPERIMENTS.add(_name, _run)


def list_experiments() -> list[str]:
    """Experiment names, sorted."""
    return _EXPERIMENTS.names()


def run_experiment(
    name: str, config: ExperimentConfig, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run experiment ``name`` as ``config`` says and write ``results.json`` (the
    configuration, the results, the wall time), ``table.md`` and ``figure.png`` to
    ``config.output``. Returns what ``results.json`` holds.

    Raises:
        ConfigError: an unknown name (the message lists the known ones), or a
            configuration written for another experiment.
    """
    run = _EXPERIMENTS.get(name)
    if config.experiment != name:
        raise ConfigError(
            f"the configuration is for experiment {config.experiment!r}, not {name!r}"
        )
    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    runner = Runner(config, log=log)
    results = run(runner)
    results = {
        "experiment": name,
        "title": _TITLES[name],
        "command": runner.command,
        "config": config.to_dict(),
        **results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = config.output
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    if name == "channel-importance":
        table = importance_table(results)
        plot_importance(results, out / "figure.png")
    else:
        table = sweep_table(results)
        plot_sweep(results, out / "figure.png", title=_TITLES[name])
    (out / "table.md").write_text(f"# {_TITLES[name]}\n\n{table}")
    log(f"wrote {out} in {results['seconds']} s")
    return results
