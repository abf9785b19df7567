"""PartialFace: pruned low frequencies, one random subset per face in a random order."""

from __future__ import annotations

import torch

from faceobfuscator.recognition.baselines.partialface import N_ORDERS, N_SUBSETS, PRUNED
from faceobfuscator.recognition.colour_dct import colour_channels
from faceobfuscator.recognition.schemes import get_scheme
from tests.helpers import smooth_face_like
from tests.recognition.baselines.frequency_tiny import TINY


def test_split_covers_the_unpruned_frequencies_once():
    scheme = get_scheme("partialface", TINY)
    assert len(scheme.kept) == 54 and not set(scheme.kept) & set(PRUNED)
    assert scheme.subsets.shape == (N_SUBSETS, 9)
    assert sorted(scheme.subsets.flatten().tolist()) == list(range(54))
    assert scheme.orders.shape == (N_ORDERS, 9)
    assert scheme.orders[0].tolist() == list(range(9))
    assert all(sorted(o.tolist()) == list(range(9)) for o in scheme.orders)
    # fixed: another instance (the server's) agrees
    again = get_scheme("partialface", TINY)
    assert torch.equal(scheme.subsets, again.subsets) and torch.equal(scheme.orders, again.orders)


def test_sent_channels_are_the_drawn_subset_in_the_drawn_order(rng):
    faces = torch.from_numpy(smooth_face_like(rng, n=1, size=16))
    scheme = get_scheme("partialface", TINY)
    encoded = scheme.encode(faces)
    for subset in range(N_SUBSETS):
        for order in range(N_ORDERS):
            sent = scheme.select(encoded, torch.tensor([subset]), torch.tensor([order]))
            freqs = [scheme.kept[int(scheme.subsets[subset, o])] for o in scheme.orders[order]]
            expected = colour_channels(faces, TINY, tuple(freqs))
            torch.testing.assert_close(sent, expected)


def test_every_subset_and_order_is_drawn(rng):
    faces = torch.from_numpy(smooth_face_like(rng, n=1, size=16)).repeat(200, 1, 1, 1)
    scheme = get_scheme("partialface", TINY)
    encoded = scheme.encode(faces[:1])
    sent = scheme.client_features(faces, generator=torch.Generator().manual_seed(0))
    seen = set()
    for s in range(N_SUBSETS):
        for o in range(N_ORDERS):
            ref = scheme.select(encoded, torch.tensor([s]), torch.tensor([o]))[0]
            if any(torch.equal(ref, x) for x in sent):
                seen.add((s, o))
    assert len(seen) == N_SUBSETS * N_ORDERS
