"""What every frequency-domain baseline (DCTDP, DuetFace, PartialFace, MinusFace) must do:
shapes and dtypes, fresh randomness per call, the server embedding exactly what the client
sent (trained parts round-tripping through a model directory), and a tiny joint training
run that beats chance."""

from __future__ import annotations

import pytest
import torch

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.backbones import build_backbone
from faceobfuscator.recognition.modeldir import load_model, load_scheme, save_model
from faceobfuscator.recognition.schemes import get_scheme, list_schemes
from tests.helpers import smooth_face_like
from tests.recognition.baselines.frequency_tiny import TINY, train_and_score

#: scheme -> (channels sent, channels the server network sees, randomised, trainable parts)
EXPECTED = {
    "dctdp": (189, 189, True, True),
    "duetface": (163, 163, False, True),
    "partialface": (27, 27, True, False),
    "minusface": (3, 3, True, True),
}
NAMES = sorted(EXPECTED)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def faces(rng):
    return torch.from_numpy(smooth_face_like(rng, n=2, size=TINY.image_size))


def test_registered():
    assert set(NAMES) <= set(list_schemes())


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_stored(name, faces):
    sent_c, server_c, _, has_parts = EXPECTED[name]
    scheme = get_scheme(name, TINY)
    assert scheme.in_channels == server_c
    assert (scheme.parts() is not None) == has_parts
    sent = scheme.client_features(faces, generator=_gen(0))
    assert sent.shape == (2, sent_c, 16, 16) and sent.dtype == torch.float32
    assert bool(torch.isfinite(sent).all())
    x = scheme.server_input(sent)
    assert x.shape == (2, server_c, 16, 16) and x.dtype == torch.float32
    assert torch.equal(scheme.stored(sent), sent)


@pytest.mark.parametrize("name", NAMES)
def test_fresh_randomness_per_call(name, faces):
    scheme = get_scheme(name, TINY)
    a = scheme.client_features(faces, generator=_gen(1))
    b = scheme.client_features(faces, generator=_gen(2))
    again = scheme.client_features(faces, generator=_gen(1))
    assert torch.equal(a, again)  # the draw comes from the generator only
    randomised = EXPECTED[name][2]
    assert (not torch.equal(a, b)) == randomised
    if randomised:  # and each face of a batch draws its own
        twice = scheme.client_features(torch.cat([faces[:1], faces[:1]]), generator=_gen(3))
        assert not torch.equal(twice[0], twice[1])


@pytest.mark.parametrize("name", NAMES)
def test_rejects_bad_faces(name, faces):
    from faceobfuscator.errors import InputError

    scheme = get_scheme(name, TINY)
    with pytest.raises(InputError, match="uint8 faces"):
        scheme.client_features(faces.float(), generator=_gen(0))


@pytest.mark.parametrize("name", NAMES)
def test_server_embeds_exactly_what_the_client_sent(name, rng, tmp_path):
    """A client with the trained parts sends; the server, with only the model directory,
    embeds that tensor as the training-side scheme would."""
    protocol = ProtocolConfig()
    trained = get_scheme(name, protocol)
    parts = trained.parts()
    if parts is not None:  # stand-in for training: parts that differ from a fresh scheme's
        with torch.no_grad():
            for p in parts.parameters():
                p.add_(torch.randn(p.shape, generator=_gen(5)) * 0.1)
    torch.manual_seed(0)
    net = build_backbone("mobilefacenet", trained.in_channels, 32)
    save_model(
        tmp_path,
        backbone_name="mobilefacenet",
        backbone=net,
        scheme_name=name,
        protocol=protocol,
        threshold=0.3,
        scheme_parts=parts,
    )
    faces = torch.from_numpy(smooth_face_like(rng, n=2))
    if parts is not None:
        parts.eval()
    client = load_scheme(tmp_path)  # what the client SDK loads
    sent = client.client_features(faces, generator=_gen(6))
    torch.testing.assert_close(sent, trained.client_features(faces, generator=_gen(6)))
    server = load_model(tmp_path)
    net.eval()
    with torch.no_grad():
        expected = torch.nn.functional.normalize(net(trained.server_input(sent)), dim=1)
    torch.testing.assert_close(server.embed_sent(sent.clone()), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_training_beats_chance(name, rng):
    accuracy = train_and_score(get_scheme(name, TINY), rng)
    # chance is 0.25: 12 or more of 24 right by chance has probability 0.002
    assert accuracy >= 0.5, accuracy
