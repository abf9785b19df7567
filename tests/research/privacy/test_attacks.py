"""Attacks: the registry, and each attack learning to undo an identity "protection" (the
raw image) on a handful of small images within a few hundred steps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.research.privacy.attacks import (
    AttackSettings,
    DNAttack,
    get_attack,
    list_attacks,
    register_attack,
)
from faceobfuscator.research.privacy.metrics import psnr, to_unit_rgb
from faceobfuscator.research.privacy.nets import (
    NbNetReconstructor,
    PatchDiscriminator,
    UNetGenerator,
)
from tests.research.privacy.synthetic import synthetic_faces

SIZE = 32


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One thread: faster than two on a shared machine, and the same on CI."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batches(
    images: torch.Tensor, batch: int, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, images.shape[0], (batch,), generator=g)
        yield images[idx] * 2 - 1, images[idx]  # "protection": the image itself, in [-1, 1]


def _blurred_mean(images: torch.Tensor) -> torch.Tensor:
    mean = images.mean(0, keepdim=True)
    kernel = torch.ones(3, 1, 5, 5) / 25
    return F.conv2d(F.pad(mean, (2, 2, 2, 2), mode="replicate"), kernel, groups=3).expand_as(images)


@pytest.mark.parametrize("name", list_attacks())
def test_attack_learns_identity_protection(name: str) -> None:
    images = to_unit_rgb(synthetic_faces(8, SIZE, seed=1))
    settings = AttackSettings(steps=300, batch_size=8, width=8, lr=2e-3, dense_layers=2)
    attack = get_attack(name, 3, settings, seed=0)
    log = attack.fit(_batches(images, 8, seed=2), log_every=50)
    recon = attack.reconstruct(images * 2 - 1)
    assert recon.shape == images.shape and recon.min() >= 0 and recon.max() <= 1
    ours = psnr(recon, images).mean().item()
    baseline = psnr(_blurred_mean(images), images).mean().item()
    assert log.nonfinite_steps == 0
    assert log.losses[-1] < log.losses[0]
    assert ours > baseline + 5.0, f"{name}: PSNR {ours:.1f} dB vs blurred mean {baseline:.1f} dB"


def test_same_seed_same_weights_and_training() -> None:
    images = to_unit_rgb(synthetic_faces(4, SIZE, seed=3))
    settings = AttackSettings(steps=3, batch_size=4, width=4)
    outs = []
    for _ in range(2):
        a = get_attack("pix2pix", 3, settings, seed=5)
        a.fit(_batches(images, 4, seed=1))
        outs.append(a.reconstruct(images))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_registry_errors() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_attack("dn", DNAttack)
    with pytest.raises(ConfigError, match=r"known: \['dn', 'pix2pix'\]"):
        get_attack("nbnet", 2, AttackSettings(), seed=0)
    with pytest.raises(ConfigError, match="steps=0"):
        AttackSettings(steps=0)


def test_input_checks() -> None:
    a = get_attack("dn", 2, AttackSettings(width=4), seed=0)
    with pytest.raises(InputError, match="built for 2 channels"):
        a.reconstruct(torch.zeros(1, 3, SIZE, SIZE))
    with pytest.raises(InputError, match="multiple of 16"):
        a.reconstruct(torch.zeros(1, 2, 40, 40))


@pytest.mark.parametrize("channels", [1, 2, 64])
def test_networks_take_any_channel_count(channels: int) -> None:
    x = torch.randn(2, channels, 112, 112)
    assert NbNetReconstructor(channels, width=4)(x).shape == (2, 3, 112, 112)
    assert UNetGenerator(channels, width=4)(x).shape == (2, 3, 112, 112)
    d = PatchDiscriminator(channels, width=4)(x, torch.rand(2, 3, 112, 112))
    assert d.shape == (2, 1, 12, 12)  # 70x70 patches of a 112 image


def test_nonfinite_batches_are_skipped_not_applied() -> None:
    a = get_attack("dn", 3, AttackSettings(steps=2, batch_size=2, width=4), seed=0)
    before = [p.detach().clone() for p in a.generator_net.parameters()]

    def bad() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield torch.full((2, 3, SIZE, SIZE), float("nan")), torch.zeros(2, 3, SIZE, SIZE)

    log = a.fit(bad())
    assert log.nonfinite_steps == 2
    for p, q in zip(before, a.generator_net.parameters(), strict=True):
        assert torch.equal(p, q.detach())
