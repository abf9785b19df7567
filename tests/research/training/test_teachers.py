"""Teachers: embeddings computed once per face and cached; the distillation pack keeps
test people out of unlabelled data; distillation training lowers its loss."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.research.data.datasets import ManifestEntry
from faceobfuscator.research.data.split import Split, write_split
from faceobfuscator.research.training import teachers
from faceobfuscator.research.training.config import TrainConfig
from faceobfuscator.research.training.data import (
    holdout,
    near_test_rule,
    person_templates,
    read_pack,
    write_pack,
)
from faceobfuscator.research.training.loop import train
from faceobfuscator.research.training.step import distill_loss


class ColourTeacher:
    """A stand-in teacher: the normalised mean colour of each face, counting its calls."""

    name = "colour"
    dim = 3

    def __init__(self):
        self.calls = 0

    def fingerprint(self):
        return "0" * 64

    def embed(self, faces):
        self.calls += len(faces)
        e = faces.reshape(len(faces), -1, 3).mean(axis=1).astype(np.float32) + 1.0
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def _faces(rng, n):
    return rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def test_embeddings_are_cached_per_face(tmp_path, rng):
    teacher = ColourTeacher()
    faces = _faces(rng, 5)
    first = teachers.teacher_embeddings(faces, teacher, cache_dir=tmp_path)
    assert teacher.calls == 5
    again = teachers.teacher_embeddings(faces[::-1].copy(), teacher, cache_dir=tmp_path)
    assert teacher.calls == 5, "a cached face must not reach the teacher again"
    np.testing.assert_array_equal(again, first[::-1])
    more = np.concatenate([faces[:2], _faces(rng, 3)])
    out = teachers.teacher_embeddings(more, teacher, cache_dir=tmp_path)
    assert teacher.calls == 8, "only the three new faces are embedded"
    np.testing.assert_array_equal(out[:2], first[:2])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_repeated_faces_are_stored_once(tmp_path, rng):
    teacher = ColourTeacher()
    faces = _faces(rng, 3)
    twice = np.concatenate([faces, faces[:1]])
    out = teachers.teacher_embeddings(twice, teacher, cache_dir=tmp_path)
    store = teachers.EmbeddingStore(tmp_path / "colour-000000000000", 3)
    assert len(store) == 3
    found, rows = store.get(teachers.face_keys(twice))
    assert found.all()
    np.testing.assert_array_equal(rows, out)


def test_teacher_embeddings_reject_bad_faces():
    with pytest.raises(InputError, match="uint8"):
        teachers.teacher_embeddings(np.zeros((2, 112, 112, 3), np.float32), ColourTeacher())


def test_unknown_teacher_lists_known():
    with pytest.raises(ConfigError, match="sface"):
        teachers.get_teacher("nobody")


def test_near_test_rule_is_the_non_mated_quantile(rng):
    centres = rng.normal(size=(40, 16))
    people = np.repeat(np.arange(40), 10).astype(str)
    e = centres[people.astype(int)] + 0.3 * rng.normal(size=(400, 16))
    e = (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)
    rule = near_test_rule(e, people, far=0.01, sample=400)
    templates, inverse = person_templates(e, people)
    scores = e @ templates.T
    mated = inverse[:, None] == np.arange(40)[None, :]
    assert rule["non_mated_comparisons"] == 400 * 39
    assert abs(np.mean(scores[~mated] >= rule["threshold"]) - 0.01) < 1e-3
    assert rule["mated_match_rate"] == np.mean(scores[mated] >= rule["threshold"]) > 0.95


def test_holdout_never_holds_out_unlabelled():
    labels = np.array([-1] * 50 + [0] * 5 + [1] * 5)
    from faceobfuscator.research.training.config import ValidationConfig

    train_idx, val_idx = holdout(labels, ValidationConfig(min_images=4, per_identity=2), seed=0)
    assert len(val_idx) == 4 and (labels[val_idx] >= 0).all()
    assert set(train_idx) | set(val_idx) == set(range(60))


def _solid(colour):
    return np.full((112, 112, 3), colour, np.uint8)


def _folder(root, name, items):
    """A prepared folder: items are (identity, filename, colour)."""
    folder = root / name
    lines = []
    for ident, fname, colour in items:
        rel = f"{ident}/{fname}" if ident else fname
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_solid(colour)).save(folder / f"{rel}.png")
        lines.append(ManifestEntry(ident, f"{rel}.jpg", "detected", f"{rel}.png").to_json())
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_pack_drops_unlabelled_faces_of_test_people(tmp_path, monkeypatch):
    monkeypatch.setitem(teachers._TEACHERS._factories, "colour", ColourTeacher)
    aligned = tmp_path / "aligned"
    red, green, blue = (200, 10, 10), (10, 200, 10), (10, 10, 200)
    _folder(
        aligned,
        "lfw",
        [
            ("Ann", "a1", red),
            ("Ann", "a2", red),
            ("Bob", "b1", green),
            ("Tess", "t1", blue),
            ("Tom", "t2", (150, 10, 150)),
            ("Tia", "t3", (10, 150, 150)),
        ],
    )
    (aligned / "cfp").mkdir()
    (aligned / "cfp" / "manifest.jsonl").write_text("")
    names = {"Ann": "ann", "Bob": "bob"}
    split = write_split(
        Split((6,), {"lfw": ("Ann", "Bob")}, ("tess", "tia", "tom"), {"lfw": names}),
        tmp_path / "s.json",
    )
    extra = _folder(tmp_path, "extra", [("", "x1", blue), ("", "x2", (120, 120, 10))])
    att = _folder(tmp_path, "att", [("s1", "1", green), ("s1", "2", green)])
    summary = write_pack(
        tmp_path / "p.npz",
        aligned_root=aligned,
        split_path=split,
        min_images=1,
        labelled_extra={"att": att},
        extra={"web": extra},
        teachers=["colour"],
        cache_dir=tmp_path / "cache",
    )
    assert summary["dropped_near_test_person"] == {"web": 1}
    assert summary["images"] == 6 and summary["labelled_images"] == 5
    pack = read_pack(tmp_path / "p.npz")
    assert pack.classes == ["ann", "bob", "att:s1"]
    assert pack.labels.tolist() == [0, 0, 1, 2, 2, -1]
    kept = pack.faces[-1].numpy()
    assert tuple(kept[0, 0]) == (120, 120, 10), "the blue image (a test person's) is dropped"
    target = pack.targets["colour"]
    assert target.shape == (6, 3)
    np.testing.assert_allclose(target.norm(dim=1).numpy(), 1.0, atol=1e-5)
    assert json.loads(json.dumps(summary))["teachers"] == {"colour": "0" * 64}


def test_distill_loss_is_cosine_plus_weighted_arcface():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tgt = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert distill_loss(
        emb, tgt, None, torch.tensor([-1, -1]), cosine_weight=1, arcface_weight=1
    ) == pytest.approx(0.5)
    logits = torch.tensor([[0.0, 0.0]])
    loss = distill_loss(
        emb, tgt, logits, torch.tensor([-1, 1]), cosine_weight=2.0, arcface_weight=0.5
    )
    assert float(loss) == pytest.approx(2 * 0.5 + 0.5 * np.log(2), rel=1e-6)


def test_distillation_run_lowers_its_loss(tmp_path, rng, monkeypatch):
    monkeypatch.setitem(teachers._TEACHERS._factories, "colour", ColourTeacher)
    colours = rng.integers(0, 256, (24, 3))
    items = [(f"P{i % 6}", f"f{i}", tuple(int(c) for c in colours[i])) for i in range(24)]
    aligned = tmp_path / "aligned"
    _folder(aligned, "lfw", items)
    names = {f"P{i}": f"p{i}" for i in range(6)}
    split = write_split(
        Split((6,), {"lfw": tuple(names)}, ("x",), {"lfw": names}), tmp_path / "s.json"
    )
    write_pack(tmp_path / "p.npz", aligned_root=aligned, split_path=split, teachers=["colour"])
    config = TrainConfig.from_dict(
        {
            "scheme": "arcface",
            "backbone": "mobilefacenet",
            "data": {"pack": str(tmp_path / "p.npz")},
            "embedding_size": 3,
            "batch_size": 8,
            "epochs": 8,
            "distill": {"teacher": "colour"},
            "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0, "schedule": "cosine"},
            "validation": {"min_images": 100},
            "device": "cpu",
            "log_every": 1,
        }
    )
    train(config, tmp_path / "run", progress=False)
    steps = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in steps if r["kind"] == "step"]
    assert np.mean(losses[-4:]) < 0.6 * np.mean(losses[:4])


def test_distillation_needs_the_teacher_in_the_pack(tmp_path, rng):
    from tests.research.training.toys import _toy_dataset

    aligned, split = _toy_dataset(tmp_path, rng)
    write_pack(tmp_path / "p.npz", aligned_root=aligned, split_path=split)
    config = TrainConfig.from_dict(
        {
            "scheme": "arcface",
            "backbone": "mobilefacenet",
            "data": {"pack": str(tmp_path / "p.npz")},
            "embedding_size": 128,
            "batch_size": 8,
            "distill": {"teacher": "sface"},
            "device": "cpu",
        }
    )
    with pytest.raises(ConfigError, match="--teacher sface"):
        train(config, tmp_path / "run", progress=False)


def test_max_steps_zero_saves_the_pretrained_network_validated(tmp_path, rng):
    from faceobfuscator.recognition.modeldir import load_model
    from faceobfuscator.recognition.sface import pretrained_sface
    from tests.research.training.toys import _toy_dataset

    aligned, split = _toy_dataset(tmp_path, rng)
    write_pack(tmp_path / "p.npz", aligned_root=aligned, split_path=split)
    config = TrainConfig.from_dict(
        {
            "scheme": "arcface",
            "backbone": "sface",
            "init": "pretrained",
            "embedding_size": 128,
            "data": {"pack": str(tmp_path / "p.npz")},
            "batch_size": 8,
            "max_steps": 0,
            "validation": {"min_images": 4, "per_identity": 2, "max_identities": 6},
            "device": "cpu",
        }
    )
    model = load_model(train(config, tmp_path / "run", progress=False))
    assert model.config["metrics"]["step"] == 0 and model.threshold is not None
    assert not model.config["metrics"]["stopped_early"]
    ref = pretrained_sface(3).state_dict()
    for name, value in model.network.state_dict().items():
        torch.testing.assert_close(value, ref[name], msg=name)


def test_sface_teacher_verifies_real_faces(datasets_root):
    """The teacher's own accuracy on a small fixture of LFW pairs (fold 6: the first 12
    mated and 12 non-mated pairs), aligned by the client's aligner."""
    from faceobfuscator.client.alignment import FaceAligner
    from faceobfuscator.client.images import load_image
    from faceobfuscator.protocol.config import ProtocolConfig
    from faceobfuscator.research.data.datasets import lfw_pairs

    pairs = [p for p in lfw_pairs(datasets_root / "lfw_meta") if p.fold == 6]
    chosen = [p for p in pairs if p.same][:12] + [p for p in pairs if not p.same][:12]
    aligner = FaceAligner(ProtocolConfig())
    rels = sorted({r for p in chosen for r in (p.path_a, p.path_b)})
    faces = np.stack(
        [aligner.align(load_image(datasets_root / "lfw" / r), select="largest") for r in rels]
    )
    emb = teachers.get_teacher("sface").embed(faces)
    index = {r: i for i, r in enumerate(rels)}
    scores = np.array([emb[index[p.path_a]] @ emb[index[p.path_b]] for p in chosen])
    same = np.array([p.same for p in chosen])
    accuracy = np.mean((scores >= 0.363) == same)  # OpenCV Zoo's cosine threshold for SFace
    assert accuracy >= 0.9, (accuracy, scores.round(2))
    assert scores[same].mean() - scores[~same].mean() > 0.4


def test_curves_of_several_runs(tmp_path):
    from faceobfuscator.research.training.report import MetricsLog, plot_runs

    for name, losses in (("a", [0.9, 0.5, 0.3]), ("b", [0.8, 0.7])):
        (tmp_path / name).mkdir()
        log = MetricsLog(tmp_path / name / "metrics.jsonl")
        for i, loss in enumerate(losses):
            log.write("step", epoch=1, step=10 * (i + 1), loss=loss)
        log.write("epoch", epoch=1, step=10 * len(losses), train_loss=loss, val_tar=0.5)
    out = plot_runs({n: tmp_path / n / "metrics.jsonl" for n in "ab"}, tmp_path / "c.png")
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="no metrics log"):
        plot_runs({"x": tmp_path / "missing.jsonl"}, tmp_path / "d.png")


def test_init_model_continues_from_a_model_directory(tmp_path, rng):
    """``init = "model"`` starts from a model directory's weights (max_steps 0 saves them
    unchanged); a directory of another scheme is refused with ConfigError."""
    from faceobfuscator.recognition.modeldir import load_model
    from tests.research.training.toys import _toy_dataset

    aligned, split = _toy_dataset(tmp_path, rng)
    write_pack(tmp_path / "p.npz", aligned_root=aligned, split_path=split)
    base = {
        "backbone": "sface",
        "embedding_size": 128,
        "data": {"pack": str(tmp_path / "p.npz")},
        "batch_size": 8,
        "validation": {"min_images": 4, "per_identity": 2, "max_identities": 6},
        "device": "cpu",
    }
    first = TrainConfig.from_dict({**base, "scheme": "arcface-fd", "max_steps": 1})
    source = train(first, tmp_path / "a", progress=False)
    cont = TrainConfig.from_dict(
        {**base, "scheme": "arcface-fd", "init": "model", "init_model": str(source), "max_steps": 0}
    )
    model = load_model(train(cont, tmp_path / "b", progress=False))
    ref = load_model(source).network.state_dict()
    for name, value in model.network.state_dict().items():
        torch.testing.assert_close(value, ref[name], msg=name)
    other = TrainConfig.from_dict(
        {**base, "scheme": "arcface", "init": "model", "init_model": str(source), "max_steps": 0}
    )
    with pytest.raises(ConfigError, match="init_model"):
        train(other, tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="init_model"):
        TrainConfig.from_dict({**base, "scheme": "arcface", "init": "model"})


def test_dlib_teacher_fingerprint_covers_the_chip_map():
    from faceobfuscator.research.privacy.identity import CHIP_FROM_HOG_112, CHIP_FROM_YUNET_112

    yunet = teachers.DlibTeacher(matrix=CHIP_FROM_YUNET_112).fingerprint()
    assert yunet == teachers.DlibTeacher(matrix=CHIP_FROM_YUNET_112).fingerprint()
    assert yunet != teachers.DlibTeacher(matrix=CHIP_FROM_HOG_112).fingerprint()
