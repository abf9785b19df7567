"""D<->sys (Gomez-Barrero et al., IEEE TIFS 2018) on synthetic scores with known answers."""

import numpy as np
import pytest

from faceobfuscator.errors import InputError
from faceobfuscator.research.privacy.unlinkability import local_measure, unlinkability

#: D<->sys for mated N(d, 1) against non-mated N(0, 1), omega = 1: there LR(s) =
#: exp(d s - d^2 / 2) > 1 for s > d / 2 and D<->(s) = tanh(log LR / 2), so
#: D<->sys = integral_{d/2}^{inf} phi(s - d) tanh((d s - d^2/2) / 2) ds. Made by
#: :func:`_gaussian_d_sys` (trapezoid rule, 2e6 intervals over [d/2, d + 12]).
GAUSSIAN_GOLDEN = {1.0: 0.2934895940901902, 2.0: 0.6165449914643546, 3.0: 0.8345715476306836}


def _gaussian_d_sys(d: float) -> float:
    s = np.linspace(d / 2, d + 12, 2_000_001)
    f = np.exp(-((s - d) ** 2) / 2) / np.sqrt(2 * np.pi) * np.tanh((d * s - d * d / 2) / 2)
    return float(np.sum((f[1:] + f[:-1]) / 2 * np.diff(s)))


def test_local_measure_follows_eq3():
    lr = np.array([0.0, 0.5, 1.0, 3.0, 9.0, np.inf])
    np.testing.assert_allclose(local_measure(lr), [0, 0, 0, 0.5, 0.8, 1.0])
    # omega scales the ratio: 0.5 * 4 = 2 -> 2*2/3 - 1
    np.testing.assert_allclose(local_measure(np.array([4.0]), omega=0.5), [1 / 3])
    with pytest.raises(InputError):
        local_measure(lr, omega=0)


def test_identical_protections_are_fully_linkable():
    # a scheme without randomness: two protections of one face are the same bytes (score 1)
    rng = np.random.default_rng(0)
    nonmated = rng.uniform(-0.3, 0.6, 5000)
    assert unlinkability(np.ones(500), nonmated).d_sys == 1.0


def test_disjoint_supports_give_one():
    rng = np.random.default_rng(1)
    result = unlinkability(rng.uniform(0.7, 1.0, 2000), rng.uniform(-0.5, 0.4, 2000))
    assert result.d_sys == 1.0
    assert np.all(result.local[result.mated > 0] == 1.0)


def test_equal_distributions_give_zero():
    scores = np.random.default_rng(2).normal(size=3000)
    assert unlinkability(scores, scores.copy()).d_sys == 0.0
    # every score equal (a constant attacker): nothing to tell apart
    assert unlinkability(np.full(50, 0.3), np.full(400, 0.3)).d_sys == 0.0


def test_same_distribution_different_samples_is_near_zero():
    rng = np.random.default_rng(3)
    assert unlinkability(rng.normal(size=20000), rng.normal(size=20000)).d_sys < 0.03


@pytest.mark.parametrize("d", sorted(GAUSSIAN_GOLDEN))
def test_gaussian_golden_values(d):
    assert _gaussian_d_sys(d) == pytest.approx(GAUSSIAN_GOLDEN[d], abs=1e-9)
    rng = np.random.default_rng(int(d))
    got = unlinkability(rng.normal(d, 1, 200_000), rng.normal(0, 1, 200_000), bins=100).d_sys
    assert got == pytest.approx(GAUSSIAN_GOLDEN[d], abs=0.01)


def test_densities_integrate_to_one_and_bad_input_raises():
    rng = np.random.default_rng(4)
    r = unlinkability(rng.normal(1, 1, 1000), rng.normal(0, 1, 1000), bins=40)
    width = np.diff(r.edges)
    assert (r.mated * width).sum() == pytest.approx(1.0)
    assert (r.nonmated * width).sum() == pytest.approx(1.0)
    assert set(r.to_dict(densities=True)) >= {"d_sys", "edges", "mated", "nonmated"}
    with pytest.raises(InputError):
        unlinkability([], [0.1])
    with pytest.raises(InputError):
        unlinkability([np.nan], [0.1])
    with pytest.raises(InputError):
        unlinkability([0.2], [0.1], bins=0)
