"""MinusFace: the channel-shuffled, decoded residue of a learned regeneration."""

from __future__ import annotations

import torch

from faceobfuscator.recognition.baselines.minusface import per_face_permutations
from faceobfuscator.recognition.schemes import get_scheme
from tests.helpers import smooth_face_like
from tests.recognition.baselines.frequency_tiny import TINY


def _zero_generator(scheme):
    with torch.no_grad():
        for p in scheme.parts().generator.out.parameters():
            p.zero_()


def test_decode_inverts_encode(rng):
    faces = torch.from_numpy(smooth_face_like(rng, n=2, size=16))
    scheme = get_scheme("minusface", TINY)
    rgb = scheme.decode(scheme.encode(faces))
    expected = faces.permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(rgb, expected, atol=1e-4, rtol=0)


def test_sent_is_the_shuffled_residue(rng):
    faces = torch.from_numpy(smooth_face_like(rng, n=2, size=16))
    scheme = get_scheme("minusface", TINY)
    _zero_generator(scheme)  # G = 0: the residue is the encoding itself
    g = torch.Generator().manual_seed(3)
    sent = scheme.client_features(faces, generator=g)
    perm = per_face_permutations(2, 192, torch.Generator().manual_seed(3))
    encoded = scheme.encode(faces)
    shuffled = torch.stack([encoded[i, perm[i]] for i in range(2)])
    torch.testing.assert_close(sent, scheme.decode(shuffled))
    lo, hi = TINY.pixel_range
    assert float(sent.min()) >= lo and float(sent.max()) <= hi
    # shuffled, it no longer looks like the face
    face = faces.permute(0, 3, 1, 2).float() / 127.5 - 1
    assert float((sent - face).abs().mean()) > 0.1


def test_permutations_are_per_face_and_uniform():
    perm = per_face_permutations(4000, 3, torch.Generator().manual_seed(0))
    assert all(sorted(p.tolist()) == [0, 1, 2] for p in perm[:50])
    counts = torch.bincount(perm[:, 0], minlength=3).double() / 4000
    torch.testing.assert_close(
        counts, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.03, rtol=0
    )


def test_regeneration_loss_trains_the_generator(rng):
    faces = torch.from_numpy(smooth_face_like(rng, n=2, size=16))
    scheme = get_scheme("minusface", TINY)
    _zero_generator(scheme)
    loss = scheme.training_loss(faces=faces, sent=torch.zeros(0))
    face = faces.permute(0, 3, 1, 2).float() / 127.5 - 1
    # G = 0 regenerates the all-zero coefficients: mid-grey after decoding
    zero = scheme.decode(torch.zeros(1, 192, 16, 16))
    torch.testing.assert_close(loss, 5 * (face - zero).abs().mean(), atol=1e-4, rtol=1e-4)
    loss.backward()
    assert float(scheme.parts().generator.out.weight.grad.abs().sum()) > 0
