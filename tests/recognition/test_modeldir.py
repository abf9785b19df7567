import json

import pytest
import torch

from faceobfuscator import ConfigError, InputError, ProtocolConfig
from faceobfuscator.recognition.backbones import build_backbone
from faceobfuscator.recognition.modeldir import load_model, make_random_model, save_model
from tests.helpers import smooth_face_like


@pytest.mark.parametrize("scheme", ["arcface", "faceobfuscator"])
def test_round_trip_gives_identical_embeddings(tmp_path, scheme):
    protocol = ProtocolConfig()
    torch.manual_seed(0)
    net = build_backbone("mobilefacenet", 3 if scheme == "arcface" else 2)
    with torch.no_grad():  # non-default BN statistics must travel too
        net.features.running_mean.uniform_(-1, 1)
    net.eval()
    save_model(
        tmp_path,
        backbone_name="mobilefacenet",
        backbone=net,
        scheme_name=scheme,
        protocol=protocol,
        threshold=0.25,
        metrics={"acc": 0.5},
        extra={},
        command="test",
    )
    model = load_model(tmp_path)
    assert model.threshold == 0.25 and model.scheme.name == scheme
    x = torch.randn(4, model.scheme.in_channels, 112, 112)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(net(x), dim=1)
    torch.testing.assert_close(model.embed(x), ref, atol=0, rtol=0)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["protocol_hash"] == protocol.hash and config["command"] == "test"
    assert "weight" not in json.dumps(config["metrics"])  # head never saved


def test_random_model_is_deterministic_and_normalised(tmp_path, rng):
    a = load_model(make_random_model(tmp_path / "a", seed=3))
    b = load_model(make_random_model(tmp_path / "b", seed=3))
    faces = torch.from_numpy(smooth_face_like(rng, n=2))
    sent = a.scheme.client_features(faces, generator=torch.Generator().manual_seed(0))
    ea, eb = a.embed_sent(sent), b.embed_sent(sent)
    assert ea.shape == (2, 512) and ea.dtype == torch.float32
    torch.testing.assert_close(ea.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(ea, eb, atol=0, rtol=0)


def test_bad_directories_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_model(tmp_path)
    make_random_model(tmp_path, scheme="arcface")
    path = tmp_path / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "scheme": "faceobfuscator", "in_channels": 2}))
    with pytest.raises(ConfigError, match="does not fit"):
        load_model(tmp_path)
    path.write_text(json.dumps({**config, "protocol_hash": "0" * 64}))
    with pytest.raises(ConfigError, match="protocol_hash"):
        load_model(tmp_path)
    path.write_text(json.dumps({**config, "backbone": "vgg"}))
    with pytest.raises(ConfigError, match="unknown backbone"):
        load_model(tmp_path)
    path.write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="safetensors"):
        load_model(tmp_path)


def test_embed_checks_its_input(tmp_path):
    model = load_model(make_random_model(tmp_path))
    with pytest.raises(InputError, match="\\(N, 2, 112, 112\\)"):
        model.embed(torch.zeros(1, 3, 112, 112))
