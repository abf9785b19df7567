import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from faceobfuscator import ConfigError, ProtocolConfig
from faceobfuscator.recognition.modeldir import load_model
from faceobfuscator.recognition.schemes import get_scheme
from faceobfuscator.research.data.datasets import ManifestEntry
from faceobfuscator.research.data.split import Split, write_split
from faceobfuscator.research.training.config import TrainConfig, ValidationConfig, load_train_config
from faceobfuscator.research.training.data import holdout, read_pack, write_pack
from faceobfuscator.research.training.head import ArcFaceHead, arcface_logits
from faceobfuscator.research.training.loop import train
from faceobfuscator.research.training.schedule import poly_lr
from faceobfuscator.research.training.step import Trainable, network_input
from tests.helpers import smooth_face_like

REPO_CONFIGS = sorted(
    p
    for p in __import__("pathlib").Path(__file__).parents[3].glob("configs/*.json")
    if "backbone" in p.read_text()
)


def test_arcface_logits_by_hand():
    cos = torch.tensor([[0.5, 0.2], [-0.95, 0.1]], dtype=torch.float64)
    labels = torch.tensor([0, 0])
    out = arcface_logits(cos, labels, s=64.0, m=0.5)
    # cos(60 deg + 0.5 rad) = 0.5 cos 0.5 - sin 60deg sin 0.5
    target0 = 0.5 * math.cos(0.5) - math.sqrt(3) / 2 * math.sin(0.5)
    # theta + m would pass pi (cos < cos(pi - m) = -0.8776): linear fallback cos - m sin m
    target1 = -0.95 - 0.5 * math.sin(0.5)
    expected = 64 * torch.tensor([[target0, 0.2], [target1, 0.1]], dtype=torch.float64)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert abs(target0 - 0.023596) < 1e-6


def test_head_module_agrees_with_function():
    torch.manual_seed(0)
    head = ArcFaceHead(5, 8, s=30.0, m=0.3)
    emb, labels = torch.randn(4, 8), torch.tensor([0, 1, 4, 2])
    cos = nn.functional.normalize(emb) @ nn.functional.normalize(head.weight).T
    torch.testing.assert_close(head(emb, labels), arcface_logits(cos, labels, s=30.0, m=0.3))


def test_poly_lr_values():
    assert poly_lr(0, total=100, base=0.1) == pytest.approx(0.1)
    assert poly_lr(50, total=100, base=0.1) == pytest.approx(0.025)
    assert poly_lr(90, total=100, base=0.1) == pytest.approx(0.001)
    assert poly_lr(100, total=100, base=0.1) == 0.0
    assert poly_lr(5, total=100, base=0.1, warmup=10) == pytest.approx(0.05)
    assert poly_lr(55, total=100, base=0.1, warmup=10) == pytest.approx(0.025)


def test_config_errors_and_repo_configs():
    base = {"scheme": "arcface", "backbone": "mobilefacenet", "data": {"pack": "x.npz"}}
    assert TrainConfig.from_dict(base).optim.lr == 0.1
    with pytest.raises(ConfigError, match="unknown keys \\['lr'\\] in config"):
        TrainConfig.from_dict({**base, "lr": 0.1})
    with pytest.raises(ConfigError, match="exactly one"):
        TrainConfig.from_dict({**base, "data": {"pack": "x", "recordio": "y"}})
    with pytest.raises(ConfigError, match="amp"):
        TrainConfig.from_dict({**base, "amp": "fp8"})
    for path in REPO_CONFIGS:
        load_train_config(path)


def test_holdout_keeps_validation_identities_in_training(rng):
    labels = np.repeat(np.arange(10), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    train_idx, val_idx = holdout(labels, ValidationConfig(min_images=4, per_identity=2), seed=0)
    assert np.intersect1d(train_idx, val_idx).size == 0
    assert train_idx.size + val_idx.size == labels.size
    held = np.bincount(labels[val_idx], minlength=10)
    assert held.tolist() == [0, 0, 0] + [2] * 7
    assert set(labels[val_idx]) <= set(labels[train_idx])


class _Tiny(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, 8, 5, stride=4)
        self.fc = nn.Linear(8 * 27 * 27, 32)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


@pytest.mark.parametrize("scheme_name", ["arcface", "faceobfuscator"])
def test_a_few_steps_reduce_the_loss(rng, scheme_name):
    torch.manual_seed(0)
    scheme = get_scheme(scheme_name, ProtocolConfig())
    faces = torch.from_numpy(smooth_face_like(rng, n=8)).repeat(2, 1, 1, 1)
    labels = torch.arange(8).repeat(2)
    model = Trainable(_Tiny(scheme.in_channels), ArcFaceHead(8, 32, s=16.0, m=0.2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(20):  # every step sees a fresh protection and random flips
        x = network_input(scheme, faces, generator=gen, flip=True)
        loss = nn.functional.cross_entropy(model(x, labels), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def _toy_dataset(tmp_path, rng, people=6, per_person=5):
    aligned = tmp_path / "aligned" / "lfw"
    lines, names = [], {}
    for p in range(people):
        ident = f"Person_{p}"
        names[ident] = ident.lower()
        (aligned / ident).mkdir(parents=True)
        for k, face in enumerate(smooth_face_like(rng, n=per_person)):
            rel = f"{ident}/{ident}_{k:04d}"
            Image.fromarray(face).save(aligned / f"{rel}.png")
            lines.append(ManifestEntry(ident, f"{rel}.jpg", "centre", f"{rel}.png").to_json())
    (aligned / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    split = Split((6,), {"lfw": tuple(names)}, ("someone_else",), {"lfw": names})
    return tmp_path / "aligned", write_split(split, tmp_path / "split.json")


def test_pack_round_trip(tmp_path, rng):
    aligned, split = _toy_dataset(tmp_path, rng, people=3, per_person=2)
    summary = write_pack(tmp_path / "p.npz", aligned_root=aligned, split_path=split, quality=95)
    assert summary["images"] == 6 and summary["classes"] == 3
    data = read_pack(tmp_path / "p.npz")
    assert data.faces.shape == (6, 112, 112, 3) and data.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.classes == ["0_person", "1_person", "2_person"]  # name keys
    original = np.asarray(Image.open(aligned / "lfw/Person_1/Person_1_0001.png"))
    assert np.abs(data.faces[3].numpy().astype(int) - original).mean() < 6  # JPEG q95


@pytest.mark.slow
def test_train_end_to_end_and_resume(tmp_path, rng):
    aligned, split = _toy_dataset(tmp_path, rng)
    write_pack(tmp_path / "p.npz", aligned_root=aligned, split_path=split)
    config = TrainConfig.from_dict(
        {
            "scheme": "faceobfuscator",
            "backbone": "mobilefacenet",
            "data": {"pack": str(tmp_path / "p.npz")},
            "batch_size": 8,
            "epochs": 1,
            "validation": {"min_images": 4, "per_identity": 2, "max_identities": 4},
            "device": "cpu",
        }
    )
    out = tmp_path / "run"
    model_dir = train(config, out, progress=False)
    for name in ("metrics.jsonl", "curves.png", "checkpoint/train_state.pt", "model/config.json"):
        assert (out / name).is_file(), name
    with pytest.raises(ConfigError, match="--resume"):
        train(config, out, progress=False)
    train(config.replace(epochs=2), out, resume=True, progress=False)
    epochs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[1]["step"] == 2 * epochs[0]["step"] == 2 * ((30 - 8) // 8)
    model = load_model(model_dir)
    assert model.threshold == epochs[1]["threshold"]


def test_epochs_for_budget_uses_the_slowest_scheme_and_the_cap(monkeypatch):
    from faceobfuscator.research.bench import training as bench

    rates = {"arcface": 1000.0, "arcface-fd": 500.0, "faceobfuscator": 900.0}
    monkeypatch.setattr(
        bench,
        "training_throughput",
        lambda backbone, scheme, *a, **k: {"train_images_per_s": rates[scheme]},
    )
    base = {"backbone": "mobilefacenet", "data": {"pack": "x"}, "device": "cpu", "epochs": 60}
    configs = [TrainConfig.from_dict({**base, "scheme": s}) for s in rates]
    plan = bench.epochs_for_budget(configs, train_images=1000, budget_s=10)
    assert plan["epochs"] == 5  # 10 s at 500 images/s over 1000 images
    assert bench.epochs_for_budget(configs, train_images=1000, budget_s=1000)["epochs"] == 60


def test_recordio_faces_stream_in_requested_batches(tmp_path, rng):
    import io

    from faceobfuscator.research.data.formats import IRHeader, pack_image_record, write_recordio
    from faceobfuscator.research.training.data import StreamedFaces

    faces = smooth_face_like(rng, n=5)
    records = [(0, pack_image_record(IRHeader(2, np.array([6.0, 9.0], "f4"), 0, 0), b""))]
    for k, face in enumerate(faces, start=1):
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, format="PNG")
        records.append((k, pack_image_record(IRHeader(0, float(k % 2), k, 0), buf.getvalue())))
    write_recordio(tmp_path / "train.rec", records)
    data = StreamedFaces(str(tmp_path / "train.rec"), workers=0)
    assert len(data) == 5 and data.classes == ["0", "1"]
    ((got, labels),) = list(data.batches([np.array([4, 0])]))
    np.testing.assert_array_equal(got.numpy(), faces[[4, 0]])
    assert labels.tolist() == [1, 1]  # keys 5 and 1
