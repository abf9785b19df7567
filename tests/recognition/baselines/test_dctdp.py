"""DCTDP: the DC-free colour channels plus Laplace noise of a learned budget allocation."""

from __future__ import annotations

import pytest
import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.recognition.baselines.dctdp import MEAN_BUDGET, LaplaceBudget
from faceobfuscator.recognition.colour_dct import colour_channels
from faceobfuscator.recognition.schemes import get_scheme
from tests.helpers import smooth_face_like
from tests.recognition.baselines.frequency_tiny import TINY


def test_features_are_the_189_ac_channels(rng):
    faces = torch.from_numpy(smooth_face_like(rng, n=2, size=16))
    scheme = get_scheme("dctdp", TINY)
    torch.testing.assert_close(
        scheme.encode(faces), colour_channels(faces, TINY, tuple(range(1, 64)))
    )


def test_noise_is_laplace_at_the_mean_budget():
    noise = LaplaceBudget((4, 16, 16))
    budgets = noise.budgets()
    torch.testing.assert_close(budgets.sum(), torch.tensor(MEAN_BUDGET * 4 * 16 * 16))
    torch.testing.assert_close(noise.scales(), torch.full((4, 16, 16), 1 / MEAN_BUDGET))
    x = torch.zeros(500, 4, 16, 16)
    with torch.no_grad():
        e = noise(x, torch.Generator().manual_seed(0)).double()
    # Laplace(0, b): mean 0, mean |e| = b, variance 2 b**2
    assert abs(float(e.mean())) < 0.01
    assert abs(float(e.abs().mean()) - 2.0) < 0.02
    assert abs(float(e.var()) - 8.0) < 0.1


def test_budget_allocation_and_mean_learn_by_gradient():
    noise = LaplaceBudget((2, 4, 4))
    out = noise(torch.zeros(3, 2, 4, 4), torch.Generator().manual_seed(0))
    out.pow(2).mean().backward()
    assert noise.rho.grad is not None and float(noise.rho.grad.abs().sum()) > 0
    assert noise.loc.grad is not None
    # moving budget to one element lowers its noise and raises everyone else's
    with torch.no_grad():
        noise.rho[0, 0, 0] = 5.0
    s = noise.scales()
    assert s[0, 0, 0] < 1 / MEAN_BUDGET < s[1, 3, 3]
    torch.testing.assert_close(noise.budgets().sum(), torch.tensor(MEAN_BUDGET * 32))


def test_bad_budget_raises():
    with pytest.raises(ConfigError, match="positive"):
        LaplaceBudget((1, 2, 2), mean_budget=0.0)
