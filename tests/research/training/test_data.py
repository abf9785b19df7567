"""Training data: hold-out identities, packs and RecordIO streaming."""

import numpy as np
from PIL import Image

from faceobfuscator.research.training.config import ValidationConfig
from faceobfuscator.research.training.data import holdout, read_pack, write_pack
from tests.helpers import smooth_face_like
from tests.research.training.toys import _toy_dataset


def test_holdout_keeps_validation_identities_in_training(rng):
    labels = np.repeat(np.arange(10), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    train_idx, val_idx = holdout(labels, ValidationConfig(min_images=4, per_identity=2), seed=0)
    assert np.intersect1d(train_idx, val_idx).size == 0
    assert train_idx.size + val_idx.size == labels.size
    held = np.bincount(labels[val_idx], minlength=10)
    assert held.tolist() == [0, 0, 0] + [2] * 7
    assert set(labels[val_idx]) <= set(labels[train_idx])


def test_pack_round_trip(tmp_path, rng):
    aligned, split = _toy_dataset(tmp_path, rng, people=3, per_person=2)
    summary = write_pack(tmp_path / "p.npz", aligned_root=aligned, split_path=split, quality=95)
    assert summary["images"] == 6 and summary["classes"] == 3
    data = read_pack(tmp_path / "p.npz")
    assert data.faces.shape == (6, 112, 112, 3) and data.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.classes == ["0_person", "1_person", "2_person"]  # name keys
    original = np.asarray(Image.open(aligned / "lfw/Person_1/Person_1_0001.png"))
    assert np.abs(data.faces[3].numpy().astype(int) - original).mean() < 6  # JPEG q95


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
