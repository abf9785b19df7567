"""Dataset readers, verification protocols, manifests and dataset preparation."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from faceobfuscator.cli import main
from faceobfuscator.client.alignment import CENTRE_LANDMARKS
from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.research.data.datasets import (
    MANIFEST_NAME,
    ManifestEntry,
    cfp_pairs,
    identity_names,
    image_root,
    lfw_pairs,
    list_images,
    mean_landmarks,
    name_key,
    normalise_name,
    prepared_path,
    read_manifest,
)
from faceobfuscator.research.data.prepare import DLIB_POLICIES, prepare_dataset


def test_lfw_pairs_are_ten_identity_disjoint_folds(datasets_root):
    pairs = lfw_pairs(datasets_root / "lfw_meta")
    assert len(pairs) == 6000
    counts = Counter((p.fold, p.same) for p in pairs)
    assert counts == {(f, s): 300 for f in range(1, 11) for s in (True, False)}
    people: dict[int, set[str]] = {}
    for p in pairs:
        a, b = p.path_a.split("/")[0], p.path_b.split("/")[0]
        assert (a == b) == p.same and p.path_a != p.path_b
        people.setdefault(p.fold, set()).update((a, b))
    for f in range(1, 11):
        for g in range(f + 1, 11):
            assert not people[f] & people[g], (f, g)
    assert len(set().union(*people.values())) == 4281  # as the dataset README says
    assert pairs[0].path_a == "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    assert pairs[0].path_b == "Abel_Pacheco/Abel_Pacheco_0004.jpg"
    root = image_root("lfw", datasets_root)
    assert all((root / p.path_a).is_file() and (root / p.path_b).is_file() for p in pairs)


def test_lfw_view1_file_without_header_has_fold_zero(datasets_root):
    pairs = lfw_pairs(datasets_root / "lfw_meta", filename="pairsDevTrain.txt")
    assert len(pairs) == 2200 and {p.fold for p in pairs} == {0}
    assert sum(p.same for p in pairs) == 1100


@pytest.mark.parametrize("protocol", ["FF", "FP"])
def test_cfp_pairs_count_and_poses(datasets_root, protocol):
    pairs = cfp_pairs(datasets_root / "cfp", protocol)
    assert len(pairs) == 7000
    counts = Counter((p.fold, p.same) for p in pairs)
    assert counts == {(f, s): 350 for f in range(1, 11) for s in (True, False)}
    second_pose = "frontal" if protocol == "FF" else "profile"
    assert all(p.path_a.split("/")[1] == "frontal" for p in pairs)
    assert all(p.path_b.split("/")[1] == second_pose for p in pairs)
    assert all((p.path_a[:3] == p.path_b[:3]) == p.same for p in pairs)
    root = image_root("cfp", datasets_root)
    assert all((root / p.path_a).is_file() and (root / p.path_b).is_file() for p in pairs)


@pytest.mark.parametrize(
    ("name", "images", "identities", "first"),
    [
        ("lfw", 13233, 5749, ("AJ_Cook", "AJ_Cook/AJ_Cook_0001.jpg")),
        ("cfp", 7000, 500, ("001", "001/frontal/01.jpg")),
        ("att", 400, 40, ("s1", "s1/1.pgm")),
    ],
)
def test_list_images(datasets_root, name, images, identities, first):
    items = list_images(name, datasets_root)
    assert len(items) == images and items[0] == first
    assert len({identity for identity, _ in items}) == identities
    assert all(rel.startswith(identity + "/") for identity, rel in items)


def test_names_are_normalised_alike_across_datasets(datasets_root):
    assert normalise_name("Amar'e Stoudemire") == normalise_name("Amare_Stoudemire")
    assert normalise_name("John Mcenroe") == normalise_name("John_McEnroe") == "john_mcenroe"
    assert normalise_name("Dr. Dre") == "dr_dre"
    assert normalise_name("José  Álvarez-Pérez") == "jose_alvarez_perez"
    assert name_key("Ziyi Zhang") == name_key("Zhang_Ziyi")
    cfp = identity_names("cfp", datasets_root)
    lfw = identity_names("lfw", datasets_root)
    assert cfp["001"] == "50_cent" and lfw["AJ_Cook"] == "aj_cook"
    assert identity_names("att", datasets_root)["s7"] == "att_s7"
    # The dataset README counts 172 exact matches; case differences (John Mcenroe /
    # John_McEnroe, ...) add 4 and name order (Ziyi Zhang / Zhang_Ziyi) 1 more.
    assert len(set(cfp.values()) & set(lfw.values())) == 176
    assert len({name_key(n) for n in cfp.values()} & {name_key(n) for n in lfw.values()}) == 177


def test_missing_root_and_unknown_dataset_raise(tmp_path):
    with pytest.raises(InputError, match="lfw images not found"):
        list_images("lfw", tmp_path)
    with pytest.raises(InputError, match="known"):
        list_images("mnist", tmp_path)
    with pytest.raises(InputError, match="pairs.txt not found"):
        lfw_pairs(tmp_path)


def test_malformed_lfw_line_names_file_and_line(tmp_path):
    (tmp_path / "pairs.txt").write_text("1\t1\nA_B\t1\t2\nA_B\t1\n")
    with pytest.raises(InputError, match=r"pairs.txt, line 3: malformed pair"):
        lfw_pairs(tmp_path)
    (tmp_path / "pairs.txt").write_text("1\t1\nA_B\t1\tC_D\t2\nA_B\t1\t2\n")
    with pytest.raises(InputError, match=r"line 2: a different-person pair"):
        lfw_pairs(tmp_path)


def test_malformed_cfp_line_names_file_and_line(tmp_path):
    protocol = tmp_path / "Protocol"
    fold = protocol / "Split" / "FF" / "01"
    fold.mkdir(parents=True)
    (protocol / "Pair_list_F.txt").write_text(
        "1 ../Data/Images/001/frontal/01.jpg\n2 ../Data/Images/001/frontal/02.jpg\n"
    )
    (fold / "same.txt").write_text("1,2\n")
    (fold / "diff.txt").write_text("1,2\n")
    pairs = cfp_pairs(tmp_path, "FF")
    assert pairs[0].path_a == "001/frontal/01.jpg" and pairs[0].fold == 1
    (fold / "diff.txt").write_text("1,2\n2;1\n")
    with pytest.raises(InputError, match=r"diff.txt, line 2: malformed pair"):
        cfp_pairs(tmp_path, "FF")
    (fold / "diff.txt").write_text("1,9\n")
    with pytest.raises(InputError, match=r"diff.txt, line 1"):
        cfp_pairs(tmp_path, "FF")


def test_manifest_reader_skips_a_cut_last_line_only(tmp_path):
    entry = ManifestEntry("s1", "s1/1.pgm", "detected", output="s1/1.png", detector="hog")
    good = entry.to_json() + "\n"
    (tmp_path / MANIFEST_NAME).write_text(good + good[:20])
    assert read_manifest(tmp_path) == {"s1/1.pgm": entry}
    (tmp_path / MANIFEST_NAME).write_text(good[:20] + "\n" + good)
    with pytest.raises(InputError, match="line 1"):
        read_manifest(tmp_path)
    assert prepared_path(tmp_path, "001/frontal/01.jpg") == tmp_path / "001/frontal/01.png"


def test_prepare_writes_crops_manifest_and_resumes(datasets_root, tmp_path):
    out = tmp_path / "att"
    argv = ["data", "prepare", "att", "--root", str(datasets_root), "--out", str(out)]
    assert main([*argv, "--limit", "4", "--workers", "2"]) == 0
    manifest = read_manifest(out)
    assert sorted(manifest) == ["s1/1.pgm", "s1/10.pgm", "s1/2.pgm", "s1/3.pgm"]
    for rel, entry in manifest.items():
        assert entry.outcome in ("detected", "centre") and entry.identity == "s1"
        png = prepared_path(out, rel)
        with Image.open(png) as img:
            assert img.mode == "RGB" and img.size == (112, 112) and img.format == "PNG"
        assert entry.landmarks is not None and len(entry.landmarks) == 5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"] == 4 and summary["this_run"]["processed"] == 4
    assert summary["detected"] + summary["centre"] == 4
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    lines = (out / MANIFEST_NAME).read_text().count("\n")

    again = prepare_dataset(
        "att", datasets_root, out, config=ProtocolConfig(), limit=4, progress=False
    )
    assert again["this_run"]["processed"] == 0 and again["total"] == 4
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == mtimes
    assert (out / MANIFEST_NAME).read_text().count("\n") == lines
    assert not list(out.rglob("*.tmp"))
    with pytest.raises(ConfigError, match="another protocol configuration"):
        prepare_dataset("att", datasets_root, out, config=ProtocolConfig(bias=1), limit=4)


def test_prepare_records_corrupt_images_and_continues(datasets_root, tmp_path):
    root = tmp_path / "datasets"
    subject = root / "att_faces" / "s1"
    subject.mkdir(parents=True)
    (subject / "1.pgm").symlink_to(datasets_root / "att_faces" / "s1" / "1.pgm")
    (subject / "2.pgm").write_bytes(b"P5\n92 112\n255\n" + b"\0" * 10)  # truncated
    summary = prepare_dataset(
        "att", root, tmp_path / "out", config=ProtocolConfig(), workers=1, progress=False
    )
    manifest = read_manifest(tmp_path / "out")
    assert manifest["s1/1.pgm"].outcome == "detected"
    bad = manifest["s1/2.pgm"]
    assert bad.outcome == "failed" and bad.output is None and "cannot decode" in str(bad.reason)
    assert not prepared_path(tmp_path / "out", "s1/2.pgm").exists()
    assert summary["failed"] == 1 and summary["detection_failed_share"] == 0.5


def test_att_centre_box_is_the_mean_of_detected_landmarks(datasets_root, tmp_path):
    """Reproduces the golden AT&T entry of CENTRE_LANDMARKS (made with dlib's HOG policy)
    from a full preparation."""
    summary = prepare_dataset(
        "att",
        datasets_root,
        tmp_path,
        config=ProtocolConfig(),
        workers=2,
        progress=False,
        policy=DLIB_POLICIES["att"],
    )
    assert summary["total"] == 400 and summary["failed"] == 0
    assert summary["detection_failed_share"] < 0.05
    mean = mean_landmarks(read_manifest(tmp_path).values())
    np.testing.assert_allclose(mean, CENTRE_LANDMARKS[(112, 92)], atol=0.01)


@pytest.mark.slow
def test_lfw_centre_box_is_the_mean_of_detected_landmarks(datasets_root, tmp_path):
    prepare_dataset(
        "lfw",
        datasets_root,
        tmp_path,
        config=ProtocolConfig(),
        progress=False,
        policy=DLIB_POLICIES["lfw"],
    )
    mean = mean_landmarks(read_manifest(tmp_path).values())
    np.testing.assert_allclose(mean, CENTRE_LANDMARKS[(176, 176)], atol=0.01)
