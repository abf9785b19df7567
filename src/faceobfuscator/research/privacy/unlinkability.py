"""Unlinkability of protected templates (ISO/IEC 24745; Gomez-Barrero, Galbally, Rathgeb and
Busch, "General Framework to Evaluate Unlinkability in Biometric Template Protection
Systems", IEEE TIFS 13(6), 2018, Section III).

Two deployments protect the same people independently; an attacker compares a template
from one with a template from the other and gets a score ``s``. Mated comparisons are of
the same face or person, non-mated of different people. With ``LR(s) = p(s | mated) /
p(s | non-mated)`` and the prior ratio ``omega = p(mated) / p(non-mated)``, the local
measure is (eq. 3)

    D<->(s) = 2 * omega * LR(s) / (1 + omega * LR(s)) - 1   where omega * LR(s) > 1, else 0,

and the global measure (eq. 4) integrates it over the mated score density:

    D<->sys = integral of p(s | mated) * D<->(s) ds,   in [0, 1].

``D<->sys = 0``: the mated and non-mated scores are distributed alike (fully unlinkable);
``1``: they never overlap (fully linkable; e.g. a scheme whose two protections of one face
are identical bytes, scored 1 against lower non-mated scores). The densities are estimated
as in the authors' reference code: histograms of both score sets over common bins, with
``LR = inf`` (so ``D<-> = 1``) where only mated scores fall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from faceobfuscator.errors import InputError

__all__ = ["Unlinkability", "local_measure", "unlinkability"]


def local_measure(lr: np.ndarray, *, omega: float = 1.0) -> np.ndarray:
    """``D<->(s)`` of eq. 3 for likelihood ratios ``lr`` (any shape, ``inf`` allowed)."""
    if omega <= 0:
        raise InputError(f"omega={omega} must be positive (a ratio of priors)")
    w = omega * np.asarray(lr, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(np.isinf(w), 1.0, 2 * w / (1 + w) - 1)
    return np.where(w > 1, d, 0.0)


@dataclass(frozen=True)
class Unlinkability:
    """``D<->sys`` and what it was computed from (for the score-density figure).

    Attributes:
        d_sys: the global measure, in [0, 1].
        edges: histogram bin edges ``(B + 1,)``.
        mated, nonmated: the score densities per bin ``(B,)`` (each integrates to 1).
        local: ``D<->(s)`` per bin ``(B,)``.
        n_mated, n_nonmated: how many scores of each kind.
    """

    d_sys: float
    edges: np.ndarray
    mated: np.ndarray
    nonmated: np.ndarray
    local: np.ndarray
    n_mated: int
    n_nonmated: int

    def to_dict(self, *, densities: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "d_sys": self.d_sys,
            "n_mated": self.n_mated,
            "n_nonmated": self.n_nonmated,
        }
        if densities:
            out |= {
                "edges": self.edges.tolist(),
                "mated": self.mated.tolist(),
                "nonmated": self.nonmated.tolist(),
            }
        return out


def _scores(values: Any, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise InputError(f"{what}: no scores")
    if not np.isfinite(v).all():
        raise InputError(f"{what}: {int((~np.isfinite(v)).sum())} scores are not finite")
    return v


def unlinkability(
    mated: Any, nonmated: Any, *, bins: int | None = None, omega: float = 1.0
) -> Unlinkability:
    """``D<->sys`` of mated and non-mated comparison scores (1-D arrays, any scale).

    Args:
        mated: scores of mated comparisons across the two deployments.
        nonmated: scores of non-mated comparisons.
        bins: histogram bins over the joint score range; default the reference code's
            ``min(len(mated) // 10, 100)`` (at least 10).
        omega: the prior ratio ``p(mated) / p(non-mated)``; 1 as in the paper's figures.

    Raises:
        InputError: empty or non-finite scores, ``bins < 1`` or ``omega <= 0``.
    """
    m, n = _scores(mated, "mated"), _scores(nonmated, "nonmated")
    if bins is None:
        bins = max(10, min(len(m) // 10, 100))
    if bins < 1:
        raise InputError(f"bins={bins} must be >= 1")
    lo, hi = float(min(m.min(), n.min())), float(max(m.max(), n.max()))
    if hi <= lo:  # every score equal: both densities are one spike at the same place
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    width = np.diff(edges)
    pm = np.histogram(m, edges)[0] / len(m)  # probability mass per bin
    pn = np.histogram(n, edges)[0] / len(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.where(pn > 0, pm / np.where(pn > 0, pn, 1.0), np.where(pm > 0, np.inf, 0.0))
    local = local_measure(lr, omega=omega)
    return Unlinkability(
        d_sys=float(np.clip((pm * local).sum(), 0.0, 1.0)),
        edges=edges,
        mated=pm / width,
        nonmated=pn / width,
        local=local,
        n_mated=len(m),
        n_nonmated=len(n),
    )
