"""The polynomial learning-rate schedule."""

import pytest

from faceobfuscator.research.training.schedule import poly_lr


def test_poly_lr_values():
    assert poly_lr(0, total=100, base=0.1) == pytest.approx(0.1)
    assert poly_lr(50, total=100, base=0.1) == pytest.approx(0.025)
    assert poly_lr(90, total=100, base=0.1) == pytest.approx(0.001)
    assert poly_lr(100, total=100, base=0.1) == 0.0
    assert poly_lr(5, total=100, base=0.1, warmup=10) == pytest.approx(0.05)
    assert poly_lr(55, total=100, base=0.1, warmup=10) == pytest.approx(0.025)
