"""A seconds-long training run of any scheme on synthetic identities, through the training
step and optimiser of ``faceobf train`` (the generic hook for trainable parts), and its
verification AUC on held-out images with fresh protections."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from faceobfuscator.recognition.schemes import Scheme
from faceobfuscator.research.training.config import TrainConfig
from faceobfuscator.research.training.head import ArcFaceHead
from faceobfuscator.research.training.loop import _optimiser
from faceobfuscator.research.training.step import Trainable, scheme_step
from tests.research.privacy.synthetic import synthetic_faces


def identities(n_ids: int, per_id: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 faces ``(n_ids * per_id, 112, 112, 3)`` and labels: each identity one synthetic
    face, its images shifted by up to 3 pixels with pixel noise."""
    rng = np.random.default_rng(seed)
    base = synthetic_faces(n_ids, 112, seed=seed).astype(np.float64)
    faces, labels = [], []
    for i in range(n_ids):
        for _ in range(per_id):
            dy, dx = rng.integers(-3, 4, 2)
            img = np.roll(base[i], (dy, dx), axis=(0, 1)) + rng.normal(0, 6, base[i].shape)
            faces.append(np.clip(img, 0, 255).round().astype(np.uint8))
            labels.append(i)
    return torch.from_numpy(np.stack(faces)), torch.tensor(labels)


def tiny_network(in_channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 5, stride=4, padding=2),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(512, 32),
    )


def train_tiny(
    scheme: Scheme, *, steps: int = 40, batch: int = 24, seed: int = 0
) -> tuple[float, list[float]]:
    """Train a tiny network (and the scheme's parts) with the ArcFace loss plus the
    scheme's own loss; returns the held-out verification AUC and the scheme-loss values."""
    torch.manual_seed(seed)
    faces, labels = identities(6, 12, seed)
    train_idx = torch.tensor([i for i in range(len(labels)) if i % 12 < 8])
    test_idx = torch.tensor([i for i in range(len(labels)) if i % 12 >= 8])
    net = tiny_network(scheme.in_channels)
    head = ArcFaceHead(6, 32, s=16.0, m=0.2)
    model = Trainable(net, head)
    config = TrainConfig.from_dict(
        {
            "scheme": scheme.name,
            "backbone": "mobilefacenet",
            "data": {"synthetic": {}},
            "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0},
        }
    )
    parts = scheme.parts()
    if parts is not None:
        parts.train()
    optimiser = _optimiser(config, net, head, set(), parts, scheme.parts_lr_scale)
    for group in optimiser.param_groups:
        group["lr"] = 0.01 * group["lr_scale"]
    g = torch.Generator().manual_seed(seed)
    own: list[float] = []
    for _ in range(steps):
        pick = train_idx[torch.randint(0, len(train_idx), (batch,), generator=g)]
        x, extra = scheme_step(scheme, faces[pick], generator=g, flip=False)
        loss = nn.functional.cross_entropy(model(x, labels[pick]), labels[pick])
        if extra is not None:
            own.append(float(extra.detach()))
            loss = loss + extra
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    if parts is not None:
        parts.eval()
    with torch.no_grad():
        x = scheme.server_input(scheme.client_features(faces[test_idx], generator=g))
        e = nn.functional.normalize(net(x), dim=1)
    sims = e @ e.T
    y = labels[test_idx]
    i, j = torch.triu_indices(len(y), len(y), 1)
    same = (y[i] == y[j]).numpy()
    scores = sims[i, j].numpy()
    return _auc(scores, same), own


def _auc(scores: np.ndarray, same: np.ndarray) -> float:
    pos, neg = scores[same], scores[~same]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
