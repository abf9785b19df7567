"""Trainable scheme parts: saved beside the network with their SHA-256, restored by
load_model and load_scheme, refused when altered or missing, and trained by `faceobf train`
like any scheme."""

from __future__ import annotations

import json

import pytest
import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.backbones import build_backbone
from faceobfuscator.recognition.modeldir import (
    PARTS_NAME,
    load_model,
    load_scheme,
    make_random_model,
    save_model,
)
from faceobfuscator.recognition.schemes import get_scheme


def _cloak_dir(tmp_path, fill: float = 0.25):
    scheme = get_scheme("cloak", ProtocolConfig())
    with torch.no_grad():
        scheme.noise.locs.fill_(fill)
        scheme.noise.rhos[0].fill_(10.0)  # channel 0 at the bound: suppressed in eval mode
    torch.manual_seed(0)
    net = build_backbone("mobilefacenet", 3, 32)
    return save_model(
        tmp_path / "m",
        backbone_name="mobilefacenet",
        backbone=net,
        scheme_name="cloak",
        protocol=ProtocolConfig(),
        threshold=0.3,
        scheme_parts=scheme.parts(),
        command="test",
    )


def test_parts_round_trip_through_the_model_directory(tmp_path):
    directory = _cloak_dir(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    assert (
        config["scheme_parts"]["file"] == PARTS_NAME and len(config["scheme_parts"]["sha256"]) == 64
    )
    for scheme in (load_model(directory).scheme, load_scheme(directory)):
        noise = scheme.parts()
        assert not noise.training
        assert torch.all(noise.locs == 0.25)
        assert noise.suppressed()[0].all() and not noise.suppressed()[1:].any()
        faces = torch.randint(0, 256, (2, 112, 112, 3), dtype=torch.uint8)
        sent = scheme.client_features(faces, generator=torch.Generator().manual_seed(0))
        # the trained, suppressed channel carries the learnt mean alone: no trace of the face
        assert torch.all(sent[:, 0] == 0.25) and not torch.all(sent[:, 1] == 0.25)


def test_altered_or_missing_parts_are_refused(tmp_path):
    directory = _cloak_dir(tmp_path)
    blob = bytearray((directory / PARTS_NAME).read_bytes())
    blob[-1] ^= 1
    (directory / PARTS_NAME).write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match="SHA-256"):
        load_model(directory)
    (directory / PARTS_NAME).unlink()
    with pytest.raises(ConfigError, match="not found"):
        load_scheme(directory)
    config = json.loads((directory / "config.json").read_text())
    del config["scheme_parts"]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="has no scheme parts"):
        load_model(directory)


def test_parts_must_fit_and_belong_to_a_scheme_with_parts(tmp_path):
    net = build_backbone("mobilefacenet", 3, 32)
    kw = dict(
        backbone_name="mobilefacenet", backbone=net, protocol=ProtocolConfig(), threshold=None
    )
    with pytest.raises(ConfigError, match="no trainable parts"):
        save_model(tmp_path / "a", scheme_name="arcface", scheme_parts=torch.nn.Linear(2, 2), **kw)
    with pytest.raises(ConfigError, match="do not fit"):
        save_model(tmp_path / "b", scheme_name="cloak", scheme_parts=torch.nn.Linear(2, 2), **kw)


def test_random_model_of_a_scheme_with_parts_saves_its_initial_parts(tmp_path):
    directory = make_random_model(tmp_path / "r", scheme="advface")
    assert (directory / PARTS_NAME).is_file()
    fresh = get_scheme("advface", ProtocolConfig()).parts().state_dict()
    loaded = load_model(directory).scheme.parts().state_dict()
    assert set(fresh) == set(loaded)
