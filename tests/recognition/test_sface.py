"""SFace in torch: the dequantised weights reproduce onnxruntime on the shipped file, and
a new stem for other channels keeps every later pretrained layer."""

import numpy as np
import pytest
import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.recognition import sface
from faceobfuscator.recognition.backbones import build_backbone, load_pretrained_weights


@pytest.fixture(scope="module")
def pretrained():
    return sface.pretrained_sface(3).eval()


def test_matches_onnxruntime_on_the_shipped_file(pretrained, rng):
    ort = pytest.importorskip("onnxruntime")
    import onnx

    model = onnx.load(str(sface.sface_onnx_path()))
    # the int8 graph lists its original weight names as inputs too; only "data" is fed
    keep = [i for i in model.graph.input if i.name == "data"]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options)
    x = rng.integers(0, 256, (2, 3, 112, 112)).astype(np.float32)
    ref = np.concatenate([session.run(None, {"data": x[i : i + 1]})[0] for i in range(2)])
    with torch.no_grad():
        got = pretrained((torch.from_numpy(x) - 127.5) / 128.0).numpy()
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 1 - 1e-6
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_new_stem_keeps_the_pretrained_body(pretrained):
    net = build_backbone("sface", 2, 128)
    loaded = load_pretrained_weights("sface", net)
    assert "stem.0.weight" not in loaded and not any(k.startswith("input_norm") for k in loaded)
    assert "body.25.0.weight" in loaded and "fc.weight" in loaded
    assert net.stem[0].weight.shape == (32, 2, 3, 3)
    ref = pretrained.state_dict()
    for name, value in net.state_dict().items():
        if name in loaded:
            torch.testing.assert_close(value, ref[name], msg=name)
    assert net(torch.randn(2, 2, 112, 112)).shape == (2, 128)


def test_other_embedding_size_leaves_the_head_fresh():
    net = sface.SFaceNet(3, 64)
    loaded = sface.load_pretrained(net)
    assert "fc.weight" not in loaded and "features.running_mean" not in loaded
    assert "stem.0.weight" in loaded


def test_a_changed_weights_file_is_refused(monkeypatch):
    monkeypatch.setattr(sface, "SFACE_SHA256", "0" * 64)
    with pytest.raises(ConfigError, match="SHA-256"):
        sface.sface_onnx_path()


def test_backbones_without_pretrained_weights_say_so():
    with pytest.raises(ConfigError, match="sface"):
        load_pretrained_weights("mobilefacenet", build_backbone("mobilefacenet", 3, 8))
