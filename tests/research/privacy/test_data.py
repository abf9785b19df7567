"""Attacker and victim identities are disjoint, on a small constructed split and on the
real benchmark protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceobfuscator.errors import InputError
from faceobfuscator.research.data.split import Split, compute_split
from faceobfuscator.research.privacy.data import Victim, attacker_keys, check_disjoint, victim_pairs


def _victim(key: str) -> Victim:
    return Victim("lfw", key, key, Path(f"{key}/1.png"), Path(f"{key}/2.png"))


def test_check_disjoint_rejects_shared_and_non_test_people() -> None:
    split = Split((6,), {"lfw": ("a",)}, ("b", "c"), {"lfw": {"a": "a"}})
    pool = attacker_keys(split)
    assert pool == {"a"}
    check_disjoint(pool, [_victim("b"), _victim("c")], split)
    with pytest.raises(InputError, match="also attacker identities"):
        check_disjoint(pool | {"b"}, [_victim("b")], split)
    with pytest.raises(InputError, match="not test identities"):
        check_disjoint(pool, [_victim("z")], split)


@pytest.fixture(scope="module")
def real_split() -> Split:
    from tests.research.privacy.synthetic import DATASETS

    if not (DATASETS / "lfw_meta").is_dir() or not (DATASETS / "cfp").is_dir():
        pytest.skip(f"needs LFW and CFP protocol files under {DATASETS} (not present)")
    return compute_split(DATASETS)


@pytest.mark.parametrize("dataset", ["lfw", "cfp"])
def test_real_victims_are_test_people_outside_the_attackers_pool(
    real_split: Split, dataset: str
) -> None:
    from tests.research.privacy.synthetic import DATASETS

    pairs = victim_pairs(dataset, real_split, DATASETS)
    people = {key for _, key, _, _ in pairs}
    assert len(people) > 100
    assert not people & attacker_keys(real_split)
    assert people <= set(real_split.test_keys)
    assert all(probe != ref for _, _, probe, ref in pairs)
    victims = [Victim(dataset, i, k, Path(p), Path(r)) for i, k, p, r in pairs]
    check_disjoint(attacker_keys(real_split), victims, real_split)


def test_victim_draw_is_seeded(real_split: Split, tmp_path: Path) -> None:
    import json

    from faceobfuscator.research.privacy.data import victims
    from tests.research.privacy.synthetic import DATASETS

    pairs = victim_pairs("lfw", real_split, DATASETS)[:40]
    folder = tmp_path / "lfw"
    folder.mkdir()
    with (folder / "manifest.jsonl").open("w") as f:
        for identity, _, probe, ref in pairs:
            for src in (probe, ref):
                entry = {"identity": identity, "source": src, "outcome": "detected"}
                f.write(json.dumps(entry | {"output": src.replace(".jpg", ".png")}) + "\n")
    draw = [
        victims("lfw", real_split, tmp_path, DATASETS, count=5, rng=np.random.default_rng(3))
        for _ in range(2)
    ]
    assert draw[0] == draw[1] and len(draw[0]) == 5
    assert len({v.identity for v in draw[0]}) == 5
