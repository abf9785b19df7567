"""The data formats people bring from insightface, read without MXNet and without
unpickling arbitrary objects.

* MXNet RecordIO (``train.rec`` + ``train.idx``): a stream of records, each ``magic
  (0xced7230a) | lrecord`` (two little-endian uint32, ``lrecord`` = 3-bit continuation flag
  and 29-bit length) followed by the data padded to 4 bytes. A record holding the magic word
  is split there into parts (flags 1, 2, 3) that are joined back with the magic. The data of
  an image record is an ``IRHeader`` (``<IfQQ``: flag, label, id, id2), then ``flag``
  float32 labels when ``flag > 0``, then the JPEG bytes. The ``.idx`` file lists
  ``key<TAB>offset`` lines.
* ``.bin`` verification packs: a pickle of ``(images, issame)``: a list of encoded images
  (bytes) or uint8 arrays, and one same/different flag per pair of consecutive images.
  :func:`read_bin` uses an unpickler that admits only those types.
"""

from __future__ import annotations

import codecs
import io
import pickle
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from faceobfuscator.client.images import load_image
from faceobfuscator.errors import FormatError, ImageError
from faceobfuscator.protocol.config import DEFAULT_IMAGE_SIZE

__all__ = [
    "RECORDIO_MAGIC",
    "FormatError",
    "IRHeader",
    "RecordIOReader",
    "pack_image_record",
    "unpack_image_record",
    "write_recordio",
    "read_bin",
    "write_bin",
    "decode_image",
]

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_REC_HEAD = struct.Struct("<II")
_IR = struct.Struct("<IfQQ")
_LEN_MASK = (1 << 29) - 1


@dataclass(frozen=True)
class IRHeader:
    """The header of an insightface image record: ``label`` is a float, or a float32 array
    when ``flag > 0`` (MS1M's index records hold identity ranges that way)."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def pack_image_record(header: IRHeader, image: bytes) -> bytes:
    """Serialise ``header`` and encoded ``image`` bytes as ``mx.recordio.pack`` does."""
    if isinstance(header.label, np.ndarray):
        labels = np.asarray(header.label, dtype="<f4").ravel()
        return _IR.pack(labels.size, 0.0, header.id, header.id2) + labels.tobytes() + image
    return _IR.pack(0, float(header.label), header.id, header.id2) + image


def unpack_image_record(data: bytes) -> tuple[IRHeader, bytes]:
    """Split record data into its header and the encoded image bytes."""
    if len(data) < _IR.size:
        raise FormatError(f"record of {len(data)} bytes is shorter than an IRHeader")
    flag, label, id_, id2 = _IR.unpack_from(data)
    rest = data[_IR.size :]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise FormatError(f"record announces {flag} labels but holds {len(rest)} bytes")
        labels = np.frombuffer(rest, dtype="<f4", count=flag).copy()
        return IRHeader(flag, labels, id_, id2), rest[4 * flag :]
    return IRHeader(flag, label, id_, id2), rest


def _read_exact(f: BinaryIO, n: int, where: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise FormatError(f"{where}: file ends inside a record")
    return data


class RecordIOReader:
    """Random access to an indexed RecordIO file.

    Args:
        rec_path: the ``.rec`` file.
        idx_path: its ``.idx`` file; default: the same name with ``.idx``.
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        for p in (self.rec_path, self.idx_path):
            if not p.is_file():
                raise FormatError(f"{p} not found")
        self.offsets: dict[int, int] = {}
        for number, line in enumerate(self.idx_path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                key, offset = line.split("\t")
                self.offsets[int(key)] = int(offset)
            except ValueError:
                raise FormatError(
                    f"{self.idx_path}, line {number}: expected 'key<TAB>offset', got {line!r}"
                ) from None
        self.keys = sorted(self.offsets)
        self._file: BinaryIO | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers each open their own file
        return {**self.__dict__, "_file": None}

    def _handle(self) -> BinaryIO:
        if self._file is None:
            self._file = open(self.rec_path, "rb")  # noqa: SIM115 - kept open for random access
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self, key: int) -> bytes:
        """The data of the record at ``key``."""
        if key not in self.offsets:
            raise FormatError(f"no record with key {key} in {self.idx_path}")
        f = self._handle()
        f.seek(self.offsets[key])
        return self._read_record(f)

    def _read_record(self, f: BinaryIO) -> bytes:
        parts: list[bytes] = []
        where = f"{self.rec_path} at byte {f.tell()}"
        while True:
            magic, lrecord = _REC_HEAD.unpack(_read_exact(f, _REC_HEAD.size, where))
            if magic != RECORDIO_MAGIC:
                raise FormatError(f"{where}: bad magic {magic:#x}, expected {RECORDIO_MAGIC:#x}")
            cflag, length = lrecord >> 29, lrecord & _LEN_MASK
            padded = (length + 3) & ~3
            parts.append(_read_exact(f, padded, where)[:length])
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts)
            if cflag not in (1, 2):
                raise FormatError(f"{where}: bad continuation flag {cflag}")

    def read_image(self, key: int) -> tuple[IRHeader, bytes]:
        """Header and encoded image of the record at ``key``."""
        return unpack_image_record(self.read(key))

    def image_keys_and_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Keys of the image records and their integer labels.

        insightface packs (MS1M, Glint360K) start with a record of ``flag > 0`` whose first
        label is one past the last image key; the images are keys ``1 .. that - 1``. Without
        it, every record is an image.
        """
        head, _ = self.read_image(self.keys[0])
        if head.flag > 0 and isinstance(head.label, np.ndarray):
            keys = np.arange(1, int(head.label[0]), dtype=np.int64)
        else:
            keys = np.asarray(self.keys, dtype=np.int64)
        labels = np.empty(len(keys), dtype=np.int64)
        for i, k in enumerate(keys):
            h, _ = self.read_image(int(k))
            label = h.label[0] if isinstance(h.label, np.ndarray) else h.label
            labels[i] = int(label)
        return keys, labels


def write_recordio(
    rec_path: str | Path, records: Iterable[tuple[int, bytes]], idx_path: str | Path | None = None
) -> None:
    """Write ``(key, data)`` records and the ``.idx`` index, splitting records at the magic
    word as dmlc's writer does."""
    rec_path = Path(rec_path)
    idx_path = Path(idx_path) if idx_path else rec_path.with_suffix(".idx")
    lines = []
    with open(rec_path, "wb") as f:
        for key, data in records:
            lines.append(f"{key}\t{f.tell()}")
            for flag, part in _split_at_magic(data):
                f.write(_REC_HEAD.pack(RECORDIO_MAGIC, (flag << 29) | len(part)))
                f.write(part + b"\0" * (-len(part) % 4))
    idx_path.write_text("\n".join(lines) + "\n")


def _split_at_magic(data: bytes) -> Iterator[tuple[int, bytes]]:
    # dmlc only looks for the magic at 4-byte aligned positions
    cuts = [i for i in range(0, len(data) - 3, 4) if data[i : i + 4] == _MAGIC_BYTES]
    if not cuts:
        yield 0, data
        return
    starts = [0] + [c + 4 for c in cuts]
    ends = cuts + [len(data)]
    for n, (a, b) in enumerate(zip(starts, ends, strict=True)):
        yield (1 if n == 0 else 3 if n == len(cuts) else 2), data[a:b]


# --- .bin verification packs -----------------------------------------------------------

_SAFE_DTYPES = {np.dtype(np.uint8), np.dtype(np.bool_)}


def _safe_dtype(spec: Any, *args: Any) -> np.dtype:
    dt = np.dtype(spec)
    if dt not in _SAFE_DTYPES:
        raise FormatError(f".bin pack holds a {dt} array; only uint8 and bool are admitted")
    return np.dtype(spec, *args)


def _safe_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise FormatError(f".bin pack reconstructs {subtype!r}; only numpy.ndarray is admitted")
    return np.ndarray.__new__(np.ndarray, shape, np.uint8)


def _safe_scalar(dtype: np.dtype, data: bytes = b"") -> Any:
    if dtype not in _SAFE_DTYPES:
        raise FormatError(f".bin pack holds a {dtype} scalar; only uint8 and bool are admitted")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _safe_frombuffer(
    buf: Any, dtype: np.dtype, shape: Any, order: Any, axis_order: Any = None
) -> np.ndarray:
    # pickle protocol 5 stores arrays as numpy's _frombuffer(buffer, dtype, shape, order)
    if np.dtype(dtype) not in _SAFE_DTYPES:
        raise FormatError(f".bin pack holds a {dtype} array; only uint8 and bool are admitted")
    array = np.frombuffer(bytes(buf), dtype=dtype)
    if order == "K" and axis_order is not None:
        return array.reshape(shape, order="C").transpose(axis_order).copy()
    return array.reshape(shape, order=order).copy()


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1")
    if encoding not in ("latin1", "latin-1"):
        raise FormatError(f".bin pack encodes text as {encoding!r}; only latin1 is admitted")
    return codecs.encode(text, "latin1")


_ALLOWED = {
    ("numpy", "dtype"): _safe_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.multiarray", "scalar"): _safe_scalar,
    ("numpy._core.multiarray", "scalar"): _safe_scalar,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise FormatError(
                f".bin pack refers to {module}.{name}, which a verification pack never holds; "
                "refusing to load it"
            ) from None


def read_bin(path: str | Path) -> tuple[list[bytes | np.ndarray], np.ndarray]:
    """Read an insightface ``.bin`` pack: the images (encoded bytes or uint8 arrays) and a
    bool array with one same/different flag per consecutive pair of images."""
    data = Path(path).read_bytes()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except FormatError:
        raise
    except Exception as exc:  # a damaged pickle fails in many ways; all mean the same
        raise FormatError(
            f"{path} is not a readable .bin pack: {type(exc).__name__}: {exc}"
        ) from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise FormatError(f"{path}: expected a pickled (images, issame) pair")
    images, issame = obj
    if not isinstance(images, (list, tuple)) or not all(
        isinstance(im, (bytes, np.ndarray)) for im in images
    ):
        raise FormatError(f"{path}: images must be a list of bytes or uint8 arrays")
    flags = np.asarray(list(issame)).astype(bool)
    if len(images) != 2 * len(flags):
        raise FormatError(f"{path}: {len(images)} images for {len(flags)} pairs; expected 2 each")
    return list(images), flags


def write_bin(
    path: str | Path, images: list[bytes | np.ndarray], issame: Iterable[bool], protocol: int = 4
) -> None:
    """Write a ``.bin`` pack (for tests and for packing our own benchmarks)."""
    Path(path).write_bytes(pickle.dumps((list(images), [bool(s) for s in issame]), protocol))


def decode_image(data: bytes | np.ndarray, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """An encoded image or an array as uint8 RGB ``(size, size, 3)``, writable (for
    ``torch.from_numpy``). Bytes go through the client's one decoder,
    :func:`faceobfuscator.client.images.load_image` (EXIF, 16-bit and mode handling).

    As insightface's loaders do, a uint8 array of shape ``(n,)``, ``(n, 1)`` or ``(1, n)``
    is taken for the encoded bytes of a JPEG or PNG (some packs store them so); other
    arrays are decoded images, ``(H, W, 3)`` or ``(3, H, W)``."""
    if isinstance(data, np.ndarray) and _holds_encoded(data):
        data = data.tobytes()
    if isinstance(data, np.ndarray):
        arr = data
        if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
            arr = arr.transpose(1, 2, 0)
    elif isinstance(data, bytes | bytearray | memoryview):
        try:
            arr = load_image(bytes(data))
        except ImageError as exc:
            raise FormatError(f"image bytes could not be decoded: {exc}") from None
        if not arr.flags.writeable:
            arr = arr.copy()
    else:
        raise FormatError(f"expected image bytes or a uint8 array, got {type(data).__name__}")
    if arr.dtype != np.uint8 or arr.shape != (size, size, 3):
        raise FormatError(
            f"image is {arr.shape} {arr.dtype}; expected aligned ({size}, {size}, 3) uint8"
        )
    return arr


def _holds_encoded(arr: np.ndarray) -> bool:
    """A uint8 vector (``(n,)``, ``(n, 1)``, ``(1, n)``): an encoded image's bytes."""
    vector = arr.ndim == 1 or (arr.ndim == 2 and 1 in arr.shape)
    return arr.dtype == np.uint8 and vector and arr.size > 16
