"""``faceobf data prepare NAME --images DIR``: any folder of unlabelled photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from faceobfuscator.cli import main
from faceobfuscator.errors import InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.research.data.datasets import (
    MANIFEST_NAME,
    list_folder_images,
    prepared_path,
    read_manifest,
)
from faceobfuscator.research.data.prepare import prepare_folder


def _face(datasets_root, rel="Aaron_Peirsol/Aaron_Peirsol_0001.jpg"):
    with Image.open(datasets_root / "lfw" / rel) as img:
        return img.convert("RGB")


@pytest.fixture
def photos(tmp_path, datasets_root):
    root = tmp_path / "photos"
    (root / "train" / "deep").mkdir(parents=True)
    (root / "val").mkdir()
    face = _face(datasets_root)
    face.save(root / "top.JPG")
    face.save(root / "train" / "1.jpeg")
    face.save(root / "train" / "deep" / "2.png")
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "val" / "noise.jpg")
    (root / "val" / "notes.txt").write_text("not a photo")
    return root


def test_list_folder_images_is_recursive_sorted_and_names_identities(photos):
    assert list_folder_images(photos) == [
        ("", "top.JPG"),
        ("train", "train/1.jpeg"),
        ("train", "train/deep/2.png"),
        ("val", "val/noise.jpg"),
    ]


def test_list_folder_images_refuses_missing_empty_and_colliding(tmp_path, photos):
    with pytest.raises(InputError, match="does not exist"):
        list_folder_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .jpg"):
        list_folder_images(tmp_path / "empty")
    (photos / "train" / "1.png").write_bytes((photos / "train" / "deep" / "2.png").read_bytes())
    with pytest.raises(InputError, match="would both be aligned to"):
        list_folder_images(photos)


def test_prepare_folder_aligns_largest_faces_without_fallback_and_resumes(photos, tmp_path):
    out = tmp_path / "aligned"
    argv = ["data", "prepare", "mine", "--images", str(photos), "--out", str(out)]
    assert main([*argv, "--workers", "1"]) == 0
    manifest = read_manifest(out)
    assert sorted(manifest) == ["top.JPG", "train/1.jpeg", "train/deep/2.png", "val/noise.jpg"]
    assert manifest["top.JPG"].identity == "" and manifest["train/deep/2.png"].identity == "train"
    for rel in ("top.JPG", "train/1.jpeg", "train/deep/2.png"):
        assert manifest[rel].outcome == "detected"
        with Image.open(prepared_path(out, rel)) as img:
            assert img.size == (112, 112) and img.mode == "RGB"
    noise = manifest["val/noise.jpg"]
    assert noise.outcome == "failed" and "no face" in str(noise.reason)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "mine" and summary["policy"]["select"] == "largest"
    assert summary["policy"]["fallback"] == "none"
    assert (summary["total"], summary["detected"], summary["failed"]) == (4, 3, 1)
    lines = (out / MANIFEST_NAME).read_text()
    again = prepare_folder("mine", photos, out, config=ProtocolConfig(), progress=False)
    assert again["this_run"]["processed"] == 0 and again["detected"] == 3
    assert (out / MANIFEST_NAME).read_text() == lines


def test_prepare_without_images_refuses_unknown_dataset_names(capsys):
    assert main(["data", "prepare", "fairface"]) != 0
    assert "unknown dataset 'fairface'" in capsys.readouterr().err
