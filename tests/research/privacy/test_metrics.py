"""Metrics: golden values on fixed synthetic images against a slow, direct reference
implementation written here, plus exact properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceobfuscator.errors import InputError
from faceobfuscator.research.privacy.metrics import mean_interval, mse, psnr, ssim, to_unit_rgb
from tests.research.privacy.synthetic import synthetic_faces


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. (2004) SSIM, written out window by window: an 11x11 Gaussian window of
    sigma 1.5 at every valid position, constants for data range 1, mean over channels."""
    g1 = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g1, g1) / np.outer(g1, g1).sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for ch in range(a.shape[0]):
        for i in range(a.shape[1] - 10):
            for j in range(a.shape[2] - 10):
                x, y = a[ch, i : i + 11, j : j + 11], b[ch, i : i + 11, j : j + 11]
                mx, my = (w * x).sum(), (w * y).sum()
                vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
                cxy = (w * x * y).sum() - mx * my
                vals.append(
                    ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
    return float(np.mean(vals))


def fixed_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 32x32 synthetic faces (different people), as float RGB in [0, 1]."""
    faces = to_unit_rgb(synthetic_faces(2, 32, seed=7)).double()
    return faces[:1], faces[1:]


# Made by: a, b = fixed_pair(); reference_ssim(a[0].numpy(), b[0].numpy()),
# ((a - b) ** 2).mean() and -10 * log10 of it (see test_golden_values_match_reference).
GOLDEN = {"ssim": 0.15848356, "mse": 0.06143080, "psnr": 12.11613860}


def test_golden_values_match_reference() -> None:
    a, b = fixed_pair()
    ref = reference_ssim(a[0].numpy(), b[0].numpy())
    direct_mse = float(((a - b) ** 2).mean())
    assert ref == pytest.approx(GOLDEN["ssim"], abs=1e-7)
    assert direct_mse == pytest.approx(GOLDEN["mse"], abs=1e-7)
    assert float(ssim(a, b)[0]) == pytest.approx(ref, abs=1e-9)
    assert float(mse(a, b)[0]) == pytest.approx(GOLDEN["mse"], abs=1e-7)
    assert float(psnr(a, b)[0]) == pytest.approx(GOLDEN["psnr"], abs=1e-6)


def test_exact_properties() -> None:
    a, b = fixed_pair()
    assert float(ssim(a, a)[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(ssim(a, b)[0]) == pytest.approx(float(ssim(b, a)[0]), abs=1e-12)
    shifted = (a + 0.1).clamp(max=10)  # constant offset: MSE 0.01, PSNR exactly 20 dB
    assert float(psnr(shifted, a)[0]) == pytest.approx(20.0, abs=1e-9)
    assert math.isinf(float(psnr(a, a)[0]))
    batch = torch.cat([a, b])
    np.testing.assert_allclose(
        ssim(batch, batch.flip(0)).numpy()[::-1], ssim(batch.flip(0), batch).numpy()
    )


def test_shape_errors() -> None:
    a, b = fixed_pair()
    with pytest.raises(InputError, match="differ in shape"):
        mse(a, b[..., :16])
    with pytest.raises(InputError, match="expected float images"):
        ssim(a[0], b[0])


def test_mean_interval_normal_and_wilson() -> None:
    iv = mean_interval([1.0, 2.0, 3.0, 4.0])
    half = 1.959963984540054 * np.std([1, 2, 3, 4], ddof=1) / 2
    assert (iv.mean, iv.low, iv.high, iv.n) == pytest.approx((2.5, 2.5 - half, 2.5 + half, 4))
    zero = mean_interval([0.0] * 20, share=True)
    assert zero.mean == 0.0 and zero.low == 0.0
    assert zero.high == pytest.approx(3.8415 / (20 + 3.8415), rel=1e-3)  # Wilson, k = 0
    with pytest.raises(InputError, match="0/1"):
        mean_interval([0.5], share=True)
    with pytest.raises(InputError, match="NaN"):
        mean_interval([float("nan")])


if __name__ == "__main__":  # prints the golden values
    a, b = fixed_pair()
    m = float(((a - b) ** 2).mean())
    print(
        {"ssim": reference_ssim(a[0].numpy(), b[0].numpy()), "mse": m, "psnr": -10 * math.log10(m)}
    )
