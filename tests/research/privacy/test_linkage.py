"""Linkage attacks (issue 14): search measures, thresholds, disjointness of attacker and
victims, and the attack itself on raw images and on pure noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.schemes import get_scheme
from faceobfuscator.research.data.split import Split
from faceobfuscator.research.privacy.data import Victim
from faceobfuscator.research.privacy.linkage import (
    Space,
    fmr_threshold,
    link_summary,
    search,
)
from faceobfuscator.research.privacy.linkage_config import LinkageConfig, LinkerSettings
from faceobfuscator.research.privacy.linkage_data import check_linkage_disjoint
from faceobfuscator.research.privacy.linkage_run import deployment_scores
from faceobfuscator.research.privacy.linkage_train import train_linker
from faceobfuscator.research.privacy.run import make_leak
from faceobfuscator.research.privacy.variants import prepare_variant
from tests.research.privacy.synthetic import synthetic_faces


def test_fmr_threshold_admits_exactly_the_allowed_false_matches():
    scores = np.arange(10_000) / 10_000
    t = fmr_threshold(scores, 1e-3)
    assert int((scores >= t).sum()) == 10
    assert (scores >= np.nextafter(t, -np.inf)).sum() == 11  # the smallest such threshold
    with pytest.raises(InputError):
        fmr_threshold(scores[:5000], 1e-3)


def test_search_ranks_the_mate_among_other_people():
    gallery = np.eye(4)
    keys = ["a", "b", "c", "a"]  # "a" has two photos: the better one counts
    probes = np.array([[0.9, 0.5, 0.0, 0.0], [0.0, 0.2, 0.9, 0.0]])
    found = search(Space("sface"), probes, ["a", "b"], gallery, keys)
    cos = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    np.testing.assert_allclose(found["mate_score"], [cos[0, 0], cos[1, 1]])
    np.testing.assert_array_equal(found["rank"], [1, 2])  # "b" is beaten by "c"
    summary = link_summary(found, {"fmr": 0.5})
    assert summary["rank1"]["mean"] == 0.5 and summary["rank10"]["mean"] == 1.0
    assert summary["linked_fmr"]["mean"] == 0.5  # cos[1, 1] = 0.216 < 0.5
    with pytest.raises(InputError):
        search(Space("sface"), probes, ["a", "z"], gallery, keys)


def test_dlib_space_scores_negative_distances_at_its_scale():
    space = Space("dlib", scale=2.0)
    a = space.from_unit(np.array([[1.0, 0.0]]))
    b = np.array([[2.0, 0.0], [2.0, 0.5]])
    np.testing.assert_allclose(space.scores(a, b), [[0.0, -0.5]])
    assert space.threshold == -0.6
    nan = np.full((1, 2), np.nan)
    assert space.scores(nan, b).max() == -np.inf


def test_identical_protections_link_fully():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(40, 16))
    ref = e + rng.normal(scale=0.3, size=e.shape)
    keys = [f"p{i}" for i in range(40)]
    u = deployment_scores(Space("sface"), e, e.copy(), ref, keys)
    assert u["same_face"]["d_sys"] == 1.0
    assert 0.5 < u["same_person"]["d_sys"] <= 1.0


def _victim(key: str) -> Victim:
    return Victim("lfw", key, key, Path("a.png"), Path("b.png"))


def test_attacker_victim_and_distractor_identities_are_disjoint():
    split = Split((6,), {"lfw": ("train_person",)}, ("alice", "bob", "carol"))
    check_linkage_disjoint({"train_person"}, [_victim("alice")], ["bob", "carol"], split)
    with pytest.raises(InputError, match="attacker identities"):
        check_linkage_disjoint({"alice"}, [_victim("alice")], ["bob"], split)
    with pytest.raises(InputError, match="distractors"):
        check_linkage_disjoint({"train_person"}, [_victim("alice")], ["alice"], split)
    with pytest.raises(InputError, match="not test identities"):
        check_linkage_disjoint(set(), [_victim("train_person")], [], split)


@pytest.mark.slow  # about a minute: the split and the FairFace manifest
def test_selected_faces_are_disjoint_on_the_real_split(datasets_root):
    from faceobfuscator.research.data.paths import ALIGNED_ROOT
    from faceobfuscator.research.privacy.linkage_data import select_linkage_faces

    if not (ALIGNED_ROOT / "lfw" / "manifest.jsonl").is_file():
        pytest.skip(f"needs the aligned LFW crops in {ALIGNED_ROOT} (faceobf data prepare lfw)")
    cfg = LinkageConfig(
        datasets_root=str(datasets_root),
        attacker_images=20,
        victims_per_dataset=4,
        gallery_identities=30,
    )
    faces = select_linkage_faces(cfg, log=lambda _: None)
    victims = set(faces.victim_keys)
    assert not victims & faces.attacker_keys
    assert faces.gallery_keys[: len(victims)] == faces.victim_keys
    assert len(set(faces.gallery_keys)) == 30
    assert not set(faces.gallery_keys[len(victims) :]) & (victims | faces.attacker_keys)
    assert faces.attacker.shape == (20, 112, 112, 3) and faces.attacker_sources["fairface"] <= 10


def test_config_checks_and_scheme_order():
    with pytest.raises(ConfigError, match="unknown linkage configuration keys"):
        LinkageConfig.from_dict({"nope": 1})
    with pytest.raises(ConfigError, match="variants"):
        LinkageConfig(variants=("white-box",))
    with pytest.raises(ConfigError, match="linker"):
        LinkageConfig(linker=LinkerSettings(steps=0))
    with pytest.raises(ConfigError, match="2x3"):
        LinkageConfig.from_dict({"dlib_chip_matrix": [[1, 0, 0]]})
    pinned = LinkageConfig.from_dict({"dlib_chip_matrix": [[1, 0, 0], [0, 1, 0]]})
    assert pinned.dlib_chip_matrix == ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
    with pytest.raises(ConfigError, match="sealed_recognizer"):
        LinkageConfig(recognizers=("dlib",), sealed_recognizer="sface")
    cfg = LinkageConfig(schemes=("faceobfuscator", "all"))
    names = cfg.scheme_names()
    assert names[0] == "faceobfuscator" and {"arcface", "arcface-fd"} <= set(names)
    assert len(names) == len(set(names))
    with pytest.raises(ConfigError, match="unknown schemes"):
        LinkageConfig(schemes=("nope",)).scheme_names()


def _photo(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = np.roll(face, int(rng.integers(-2, 3)), axis=1).astype(float)
    return np.clip(x + rng.normal(0, 6, face.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def toy_world():
    """Synthetic people (two noisy photos each) and SFace as the recognizer: 24 attacker
    faces, 12 victims searched among 40 identities."""
    from faceobfuscator.research.training.teachers import get_teacher

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    people = synthetic_faces(76, 112, seed=5)
    attacker = people[52:]
    probe = np.stack([_photo(f, rng) for f in people[:12]])
    gallery = np.stack([_photo(f, rng) for f in people[:40]])
    sface = get_teacher("sface")
    return {
        "attacker": attacker,
        "targets": sface.embed(attacker),
        "probe": probe,
        "gallery": sface.embed(gallery),
        "keys": [f"p{i}" for i in range(40)],
    }


def _attack(world, leak, variant: str) -> tuple[float, int]:
    """Train a linkage network for two steps on the leak; the victims' rank-1 rate and the
    steps skipped for a non-finite loss."""
    scheme = get_scheme("arcface", ProtocolConfig())
    g = torch.Generator().manual_seed(0)
    faces = torch.from_numpy(world["attacker"][:4])
    pre = prepare_variant(variant, scheme=scheme, leak=leak, probe_faces=faces, generator=g)
    settings = LinkerSettings(steps=2, batch_size=8, max_seconds=60)
    linker, log = train_linker(world["attacker"], world["targets"], leak, pre, settings)
    pred = linker.embed(leak(torch.from_numpy(world["probe"]), torch.Generator().manual_seed(9)))
    found = search(Space("sface"), pred, world["keys"][:12], world["gallery"], world["keys"])
    return float((found["rank"] == 1).mean()), log.nonfinite_steps


@pytest.mark.slow  # SFace twice and two training steps: 20-60 s on a shared CPU
def test_linkage_on_raw_images_links_far_above_the_floor(toy_world):
    leak = make_leak(get_scheme("arcface", ProtocolConfig()), "C")
    rank1, nonfinite = _attack(toy_world, leak, "adaptive")
    keys = toy_world["keys"]
    random = np.random.default_rng(1).normal(size=(12, 128))
    floor = search(Space("sface"), random, keys[:12], toy_world["gallery"], keys)
    assert nonfinite == 0
    assert rank1 >= 0.6, rank1
    assert float((floor["rank"] == 1).mean()) <= 0.25


@pytest.mark.slow  # SFace twice and two training steps: 20-60 s on a shared CPU
def test_linkage_on_pure_noise_stays_at_the_floor(toy_world):
    def noise(faces: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return torch.rand((faces.shape[0], 3, 112, 112), generator=g) * 2 - 1

    # chance: 1/40 per victim; 3 of 12 has probability < 1% under chance
    assert _attack(toy_world, noise, "as-paper")[0] <= 0.25


@pytest.mark.slow  # SFace twice and two training steps: 20-60 s on a shared CPU
def test_training_gives_up_when_nothing_is_finite(toy_world):
    def broken(faces: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return torch.full((faces.shape[0], 3, 112, 112), float("inf"))

    pre = prepare_variant(
        "as-paper",
        scheme=get_scheme("arcface", ProtocolConfig()),
        leak=broken,
        probe_faces=torch.from_numpy(toy_world["attacker"][:2]),
        generator=torch.Generator().manual_seed(0),
    )
    settings = LinkerSettings(steps=50, batch_size=2, max_seconds=60)
    _, log = train_linker(toy_world["attacker"], toy_world["targets"], broken, pre, settings)
    assert (log.steps, log.nonfinite_steps, log.losses) == (3, 3, [])


def test_reports_quote_the_measures(tmp_path):
    from faceobfuscator.research.privacy.linkage_report import write_linkage_reports

    rng = np.random.default_rng(0)
    e = rng.normal(size=(30, 8))
    keys = [f"p{i}" for i in range(30)]
    u = deployment_scores(Space("sface"), e, e, e + rng.normal(size=e.shape), keys)
    found = search(Space("sface"), e, keys, e, keys)
    summary = {"lfw": link_summary(found, {"threshold": 0.363, "fmr": 0.5})}
    row = {
        "scheme": "faceobfuscator",
        "scenario": "C",
        "variant": "adaptive",
        "recognizer": "sface",
        "deployment": "plain",
        "search": summary,
        "unlinkability": u,
    }
    results = {
        "config": LinkageConfig(name="t").to_dict(),
        "victims": {"lfw": 30},
        "attacker_sources": {"fairface": 1},
        "gallery_identities": 30,
        "recognizers": {
            "sface": {
                "threshold": 0.363,
                "threshold_fmr": 0.001,
                "nonmated_pairs": 10,
                "fmr": 0.001,
                "fmr_threshold": 0.4,
                "reference": {"floor": summary},
            }
        },
        "rows": [row],
        "server_unlinkability": {"faceobfuscator/C": u},
        "sealed": [],
    }
    out = write_linkage_reports(results, tmp_path)
    md = (out / "linkage.md").read_text()
    assert "| faceobfuscator | plain | adaptive | C | 1.00 [" in md
    assert "| faceobfuscator/C | 1.00 |" in md
    assert "not independent of the server network" in md
    assert (out / "linkage_densities.png").stat().st_size > 1000
    saved = json.loads((out / "linkage.json").read_text())
    d_sys = saved["rows"][0]["unlinkability"]["same_face"]["d_sys"]
    assert d_sys == pytest.approx(u["same_face"]["d_sys"], abs=1e-4) and d_sys > 0.9


@pytest.mark.parametrize("space", [Space("dlib", scale=1.4), Space("sface")])
def test_random_embeddings_are_unlinkable(space):
    from faceobfuscator.research.privacy.linkage_run import random_unlinkability

    u = random_unlinkability(space, 200, seed=8)
    assert u["same_face"]["d_sys"] < 0.15 and u["same_person"]["d_sys"] < 0.15


LINKAGE_CONFIGS = sorted(
    (Path(__file__).resolve().parents[3] / "configs").glob("privacy-linkage-*.json")
)


@pytest.mark.parametrize("path", LINKAGE_CONFIGS, ids=lambda p: p.name)
def test_shipped_linkage_configs_load(path: Path) -> None:
    cfg = LinkageConfig.load(path)
    again = LinkageConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and cfg.scheme_names()


def test_model_digest_follows_the_weights(tmp_path: Path) -> None:
    from faceobfuscator.research.privacy.linkage_run import model_digest

    assert model_digest(tmp_path) is None  # no model: nothing to resume against
    (tmp_path / "model.safetensors").write_bytes(b"weights one")
    first = model_digest(tmp_path)
    (tmp_path / "scheme.safetensors").write_bytes(b"client parts")
    with_parts = model_digest(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"weights two")
    assert len({first, with_parts, model_digest(tmp_path)}) == 3


def test_faces_digest_changes_with_any_pixel_or_key() -> None:
    from faceobfuscator.research.privacy.linkage_data import LinkageFaces

    rng = np.random.default_rng(3)

    def faces(probe: np.ndarray, keys: list[str]) -> LinkageFaces:
        return LinkageFaces(
            attacker=np.zeros((2, 4, 4, 3), np.uint8),
            attacker_keys=frozenset(),
            attacker_sources={"fairface": 2},
            probe=probe,
            victim_keys=keys,
            victim_datasets=["lfw"],
            gallery=np.ones((2, 4, 4, 3), np.uint8),
            gallery_keys=["a", "b"],
            gallery_datasets=["lfw", "lfw"],
            split_digest="s",
        )

    probe = rng.integers(0, 256, (1, 4, 4, 3), dtype=np.uint8)
    first = faces(probe, ["a"]).digest()
    assert faces(probe.copy(), ["a"]).digest() == first
    changed = probe.copy()
    changed[0, 0, 0, 0] ^= 1
    assert faces(changed, ["a"]).digest() != first
    assert faces(probe, ["c"]).digest() != first
