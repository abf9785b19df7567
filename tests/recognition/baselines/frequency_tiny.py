"""A tiny protocol, tiny identities and a tiny training run for the frequency-domain
baselines' tests (seconds on one CPU thread)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from faceobfuscator.protocol.config import ARCFACE_TEMPLATE_112, ProtocolConfig
from faceobfuscator.recognition.schemes import Scheme
from faceobfuscator.research.training.step import scheme_step

TINY_SIZE = 16
#: 16x16 faces, the ArcFace template scaled to them
TINY = ProtocolConfig(
    image_size=TINY_SIZE,
    template=tuple((x * TINY_SIZE / 112, y * TINY_SIZE / 112) for x, y in ARCFACE_TEMPLATE_112),
)


def identity_faces(
    rng: np.random.Generator, *, people: int, per_person: int, size: int = TINY_SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 faces ``(people * per_person, size, size, 3)`` and their labels: each person a
    random pattern (coarse and fine detail), each photo that pattern with its own
    brightness and noise."""
    coarse = rng.uniform(40, 215, (people, 1, 1, 3))
    fine = rng.normal(0, 45, (people, size, size, 3))
    faces, labels = [], []
    for p in range(people):
        for _ in range(per_person):
            img = coarse[p] + fine[p] + rng.normal(0, 12, (size, size, 3)) + rng.normal(0, 10)
            faces.append(np.clip(np.round(img), 0, 255).astype(np.uint8))
            labels.append(p)
    return torch.from_numpy(np.stack(faces)), torch.tensor(labels)


class TinyNet(nn.Module):
    """A small classifier standing in for the server network."""

    def __init__(self, in_channels: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 2, 1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(256, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def train_and_score(scheme: Scheme, rng: np.random.Generator, *, steps: int = 100) -> float:
    """Train ``TinyNet`` and the scheme's parts jointly (the training loop's step, its
    scheme loss included) on 4 tiny identities; the accuracy on unseen photos of them,
    each with a fresh protection."""
    torch.manual_seed(0)
    faces, labels = identity_faces(rng, people=4, per_person=12)
    test_faces, test_labels = faces[::2], labels[::2]  # unseen photos of the same people
    train_faces, train_labels = faces[1::2], labels[1::2]
    net = TinyNet(scheme.in_channels, 4)
    parts = scheme.parts()
    params = list(net.parameters()) + (list(parts.parameters()) if parts is not None else [])
    opt = torch.optim.Adam(params, lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randint(0, len(train_faces), (16,), generator=g)
        x, extra = scheme_step(scheme, train_faces[idx], generator=g, flip=False)
        loss = nn.functional.cross_entropy(net(x), train_labels[idx])
        if extra is not None:
            loss = loss + extra
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    if parts is not None:
        parts.eval()
    with torch.no_grad():
        sent = scheme.client_features(test_faces, generator=g)
        pred = net(scheme.server_input(sent)).argmax(1)
    return float((pred == test_labels).double().mean())
