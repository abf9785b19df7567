"""Experiments 2-6: sweeps over settings of the client, each setting trained with the
experiment's recipe, verified, and attacked (see :class:`~.runner.Runner`).

Each ``run_*`` takes a :class:`~.runner.Runner` and returns the results, JSON-ready:
``{"rows": [...], ...}``; a row has ``group`` (a series), ``setting`` (its x label),
``scheme``, ``protocol`` (the overrides), ``accuracy`` (per benchmark), ``privacy`` (per
victim dataset and attacker variant, with floor and ceiling, or ``None``) and
``status``.
"""

from __future__ import annotations

from typing import Any

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig, safe_exponent_range
from faceobfuscator.research.experiments.importance import (
    channel_name,
    importance_variant,
    live_channels,
)
from faceobfuscator.research.experiments.runner import Runner

__all__ = [
    "PAPER_CHANNELS",
    "run_single_channels",
    "run_channel_count",
    "run_uv_range",
    "run_base_b",
    "run_components",
]

#: Table 2's channels: DC, AC01, AC10, AC14, AC37, AC63, AC77 (``k = 8 i + j``).
PAPER_CHANNELS = (0, 1, 8, 12, 31, 51, 63)


def _settings(runner: Runner, known: dict[str, Any]) -> dict[str, Any]:
    s = runner.config.settings
    unknown = sorted(set(s) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown {runner.config.experiment} settings {unknown}; known: {sorted(known)}"
        )
    return {**known, **s}


def run_single_channels(runner: Runner) -> dict[str, Any]:
    """Table 2: recognition from one channel at a time. Settings: ``channels`` (default
    :data:`PAPER_CHANNELS`), ``scheme`` (default ``dct-normalised``: the channel
    standardised, not obfuscated), ``privacy`` (default false)."""
    s = _settings(
        runner, {"channels": list(PAPER_CHANNELS), "scheme": "dct-normalised", "privacy": False}
    )
    rows = [
        runner.setting(
            s["scheme"],
            {"channels": [int(k)]},
            privacy=bool(s["privacy"]),
            group="",
            setting=channel_name(int(k)),
        )
        for k in s["channels"]
    ]
    return {"rows": rows}


def run_channel_count(runner: Runner) -> dict[str, Any]:
    """Figures 5 and 8: keep the ``N`` most important channels (standardised importance
    of experiment 1's variant (d), computed or reused), for ``N`` in ``keep``; each
    without (``dct-normalised``) and with the obfuscation (``faceobfuscator``). Dead
    channels are never kept (see :func:`~.importance.live_channels`): an ``N`` above the
    number of live channels keeps them all.
    Settings: ``keep`` (default 64, 32, 16, 8, 4, 2, 1), ``groups`` (``[label,
    scheme]`` pairs). Rows carry ``accuracy_loss``: the accuracy of the group's largest
    ``N`` minus this row's, per benchmark."""
    s = _settings(
        runner,
        {
            "keep": [64, 32, 16, 8, 4, 2, 1],
            "groups": [
                ["without obfuscation", "dct-normalised"],
                ["with obfuscation", "faceobfuscator"],
            ],
        },
    )
    n = ProtocolConfig.from_dict(runner.protocol({})).scale ** 2
    if not s["keep"] or min(s["keep"]) < 1 or max(s["keep"]) > n:
        raise ConfigError(f"keep must hold channel counts in [1, {n}], got {s['keep']}")
    runner.log("removal order: standardised importance (experiment 1, variant (d))")
    order = importance_variant(runner, "dct-normalised", list(range(n)))["order"]
    keep = sorted({min(int(k), len(order)) for k in s["keep"]}, reverse=True)
    rows = []
    for label, scheme in s["groups"]:
        group = []
        for count in keep:
            chans = sorted(order[:count])
            group.append(
                runner.setting(
                    scheme, {"channels": chans}, group=label, setting=str(count), kept=count
                )
            )
        ref = group[0].get("accuracy") or {}
        for row in group:
            acc = row.get("accuracy") or {}
            row["accuracy_loss"] = {
                b: ref[b]["accuracy"] - acc[b]["accuracy"] for b in acc if b in ref
            }
        rows += group
    return {"rows": rows, "order": order, "order_names": [channel_name(k) for k in order]}


def _v_range(spec: Any, b: float, size: int) -> list[int]:
    if spec == "max":
        return list(safe_exponent_range(b, size * size))
    if not (isinstance(spec, list) and len(spec) == 2):
        raise ConfigError(f'a range is [low, high] or "max", got {spec!r}')
    return [int(spec[0]), int(spec[1])]


def run_uv_range(runner: Runner) -> dict[str, Any]:
    """Figure 7: the range of ``u`` and ``v`` (both set to it). Settings: ``ranges``
    (``[low, high]`` or ``"max"``, the largest float32 allows for the protocol's ``b``),
    ``scheme`` (default ``faceobfuscator``)."""
    s = _settings(
        runner,
        {"ranges": [[0, 1], [-30, 30], [-60, 60], [-90, 90], "max"], "scheme": "faceobfuscator"},
    )
    base = ProtocolConfig.from_dict(runner.protocol({}))
    rows = []
    for spec in s["ranges"]:
        r = _v_range(spec, base.b, base.image_size)
        label = f"[{r[0]}, {r[1]}]" + (" (max)" if spec == "max" else "")
        rows.append(
            runner.setting(s["scheme"], {"u_range": r, "v_range": r}, group="", setting=label)
        )
    return {"rows": rows}


def run_base_b(runner: Runner) -> dict[str, Any]:
    """Appendix D, Table 6, Figure 13: the base ``b`` of the random scale with a range of
    ``v`` for each. Settings: ``bases`` (``{"b": B, "v_range": [low, high] or "max"}``),
    ``scheme`` (default ``faceobfuscator``)."""
    s = _settings(
        runner,
        {
            "bases": [
                {"b": 1.8, "v_range": "max"},
                {"b": 2.0, "v_range": [-60, 60]},
                {"b": 10.0, "v_range": "max"},
                {"b": 100.0, "v_range": "max"},
            ],
            "scheme": "faceobfuscator",
        },
    )
    size = ProtocolConfig.from_dict(runner.protocol({})).image_size
    rows = []
    for spec in s["bases"]:
        b = float(spec["b"])
        r = _v_range(spec.get("v_range", "max"), b, size)
        rows.append(
            runner.setting(
                s["scheme"], {"b": b, "v_range": r}, group="", setting=f"b={b:g}, v in {r}"
            )
        )
    return {"rows": rows}


def run_components(runner: Runner) -> dict[str, Any]:
    """Figure 11, Table 5: the client with visual-information deletion only
    (``dct-normalised``, the protocol's channels), obfuscation only (all live channels
    obfuscated, see :func:`~.importance.live_channels`), both (``faceobfuscator``); the server with identity recovery, without it
    in training and use (``faceobfuscator-no-recovery``), and without it at test time
    only (the model trained with recovery). A server-side change leaves what is sent
    unchanged, so those rows share their client's privacy figures."""
    _settings(runner, {})
    everything = {"channels": live_channels(ProtocolConfig.from_dict(runner.protocol({})))}
    rows = [
        runner.setting("dct-normalised", {}, group="deletion only", setting="no recovery step"),
    ]
    for client, proto in (("obfuscation only", everything), ("deletion + obfuscation", {})):
        with_rec = runner.setting("faceobfuscator", proto, group=client, setting="recovery")
        trained = runner.setting(
            "faceobfuscator-no-recovery",
            proto,
            privacy=False,
            group=client,
            setting="no recovery (trained without)",
        )
        test_only = runner.setting(
            "faceobfuscator",
            proto,
            privacy=False,
            recovery=False,
            group=client,
            setting="no recovery (test time only)",
        )
        for row in (trained, test_only):
            row["privacy"] = with_rec["privacy"]
            row["privacy_note"] = "the client is the same as the recovery row's"
        rows += [with_rec, trained, test_only]
    return {"rows": rows}
