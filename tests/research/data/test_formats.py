import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from faceobfuscator.research.data.formats import (
    RECORDIO_MAGIC,
    FormatError,
    IRHeader,
    RecordIOReader,
    decode_image,
    pack_image_record,
    read_bin,
    unpack_image_record,
    write_bin,
    write_recordio,
)
from tests.helpers import smooth_face_like

MAGIC = RECORDIO_MAGIC.to_bytes(4, "little")


def _encode(face: np.ndarray, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, format=fmt)
    return buf.getvalue()


def test_recordio_round_trip_with_index_record_and_embedded_magic(tmp_path, rng):
    faces = smooth_face_like(rng, n=3)
    images = [_encode(f, "PNG") for f in faces]  # lossless, to compare pixels
    # MS1M layout: record 0 says images are keys 1..3 (label[0] = 4)
    records = [(0, pack_image_record(IRHeader(2, np.array([4.0, 6.0], "f4"), 0, 0), b""))]
    labels = [7, 7, 9]
    for k, (img, lab) in enumerate(zip(images, labels, strict=True), start=1):
        records.append((k, pack_image_record(IRHeader(0, float(lab), k, 0), img)))
    # a record that contains the magic word at an aligned offset is split and joined back
    tricky = b"abcd" + MAGIC + b"efgh" + MAGIC + b"xy"
    records.append((4, tricky))
    write_recordio(tmp_path / "train.rec", records)
    raw = (tmp_path / "train.rec").read_bytes()
    assert raw.count(MAGIC) == len(records) + 2  # two extra part headers, no raw magic
    reader = RecordIOReader(tmp_path / "train.rec")
    assert len(reader) == 5
    assert reader.read(4) == tricky
    keys, labs = reader.image_keys_and_labels()
    assert keys.tolist() == [1, 2, 3] and labs.tolist() == labels
    header, img = reader.read_image(2)
    assert header.id == 2 and header.label == 7.0 and img == images[1]
    np.testing.assert_array_equal(decode_image(img), faces[1])


def test_recordio_rejects_damage(tmp_path):
    write_recordio(tmp_path / "a.rec", [(0, b"12345678")])
    data = bytearray((tmp_path / "a.rec").read_bytes())
    data[0] ^= 0xFF
    (tmp_path / "a.rec").write_bytes(bytes(data))
    with pytest.raises(FormatError, match="bad magic"):
        RecordIOReader(tmp_path / "a.rec").read(0)
    with pytest.raises(FormatError, match="shorter than an IRHeader"):
        unpack_image_record(b"short")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_bin_round_trip_bytes_and_arrays(tmp_path, rng, protocol):
    faces = smooth_face_like(rng, n=4)
    images = [_encode(faces[0]), _encode(faces[1]), faces[2], faces[3]]
    write_bin(tmp_path / "t.bin", images, [True, np.bool_(False)], protocol=protocol)
    got, issame = read_bin(tmp_path / "t.bin")
    assert got[0] == images[0] and got[1] == images[1]
    np.testing.assert_array_equal(got[2], faces[2])
    assert issame.tolist() == [True, False]


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_bin_reader_refuses_a_malicious_pickle(tmp_path):
    sentinel = tmp_path / "pwned"
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([_Evil(sentinel)], [True])))
    with pytest.raises(FormatError, match="refusing"):
        read_bin(tmp_path / "evil.bin")
    assert not sentinel.exists()
    (tmp_path / "obj.bin").write_bytes(pickle.dumps(([np.zeros(2, dtype=object)] * 2, [True])))
    with pytest.raises(FormatError, match="only uint8 and bool"):
        read_bin(tmp_path / "obj.bin")
    (tmp_path / "f.bin").write_bytes(pickle.dumps(([np.zeros(2, dtype=np.float64)] * 2, [True])))
    with pytest.raises(FormatError, match="only uint8 and bool"):
        read_bin(tmp_path / "f.bin")


def test_bin_shape_checks(tmp_path):
    write_bin(tmp_path / "odd.bin", [b"a", b"b", b"c"], [True])
    with pytest.raises(FormatError, match="3 images for 1 pairs"):
        read_bin(tmp_path / "odd.bin")
    with pytest.raises(FormatError, match="expected aligned"):
        decode_image(np.zeros((100, 100, 3), np.uint8))


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("layout", ["bytes", "1-d", "(n, 1)", "(1, n)", "decoded", "CHW"])
def test_bin_packs_in_every_layout_insightface_reads(tmp_path, rng, protocol, layout):
    """Packs that store encoded JPEG/PNG bytes as uint8 arrays (n,) or (n, 1), as bytes,
    or decoded arrays, all read back to the same faces."""
    faces = smooth_face_like(rng, n=2)
    png = [_encode(f, "PNG") for f in faces]
    store = {
        "bytes": lambda i: png[i],
        "1-d": lambda i: np.frombuffer(png[i], np.uint8),
        "(n, 1)": lambda i: np.frombuffer(png[i], np.uint8)[:, None],
        "(1, n)": lambda i: np.frombuffer(png[i], np.uint8)[None, :],
        "decoded": lambda i: faces[i],
        "CHW": lambda i: faces[i].transpose(2, 0, 1).copy(),
    }[layout]
    write_bin(tmp_path / "p.bin", [store(0), store(1)], [True], protocol=protocol)
    images, issame = read_bin(tmp_path / "p.bin")
    assert issame.tolist() == [True]
    for image, face in zip(images, faces, strict=True):
        np.testing.assert_array_equal(decode_image(image), face)
    with pytest.raises(FormatError, match="could not be decoded"):
        decode_image(np.frombuffer(b"not an image at all, just text", np.uint8)[:, None])
