"""DuetFace: high frequencies sent with a face-masked guiding map of the low ones."""

from __future__ import annotations

import torch

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.obfuscation import self_normalise
from faceobfuscator.recognition.baselines.duetface import CLIENT_FREQUENCIES, face_region
from faceobfuscator.recognition.colour_dct import colour_channels
from faceobfuscator.recognition.schemes import get_scheme
from tests.helpers import smooth_face_like
from tests.recognition.baselines.frequency_tiny import TINY


def test_face_region_surrounds_the_template():
    p = ProtocolConfig()
    region = face_region(p)
    assert region.shape == (112, 112)
    for x, y in p.template:  # eyes, nose, mouth corners inside
        assert region[int(y), int(x)] == 1
    assert region[0, 0] == region[111, 0] == region[0, 111] == 0
    assert 0.35 < float(region.mean()) < 0.7


def test_sent_is_the_high_frequencies_and_a_masked_map(rng):
    faces = torch.from_numpy(smooth_face_like(rng, n=2, size=16))
    scheme = get_scheme("duetface", TINY)
    scheme.parts().eval()
    with torch.no_grad():
        sent = scheme.client_features(faces, generator=torch.Generator().manual_seed(0))
    high = tuple(k for k in range(64) if k not in CLIENT_FREQUENCIES)
    torch.testing.assert_close(sent[:, :162], colour_channels(faces, TINY, high))
    mask = sent[:, 162]
    assert float(mask.min()) == 0.0 and abs(float(mask.amax(dim=(-2, -1)).min()) - 1.0) < 1e-6
    assert float(mask[:, face_region(TINY) == 0].abs().max()) == 0.0
    x = scheme.server_input(sent)
    z = self_normalise(sent[:, :162], TINY)
    torch.testing.assert_close(x[:, :162], z * (1 + sent[:, 162:]))
    torch.testing.assert_close(x[:, 162], mask)


def test_the_map_depends_on_the_low_frequencies_and_trains(rng):
    faces = torch.from_numpy(smooth_face_like(rng, n=3, size=16))
    scheme = get_scheme("duetface", TINY)
    encoded = scheme.encode(faces)
    low = encoded[:, :30]
    mask = scheme.mask(low)
    assert not torch.allclose(mask[0], mask[1])
    mask.sum().backward()
    grads = [p.grad for p in scheme.parts().parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
