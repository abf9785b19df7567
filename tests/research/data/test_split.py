import pytest

from faceobfuscator import ConfigError
from faceobfuscator.research.data.datasets import identity_names, name_key
from faceobfuscator.research.data.split import (
    benchmark_pairs,
    compute_split,
    parse_folds,
    read_split,
    write_split,
)


@pytest.fixture(scope="module")
def split(datasets_root):
    return compute_split(datasets_root)


def test_training_identities_are_disjoint_from_every_test_pair(split, datasets_root, tmp_path):
    split = read_split(write_split(split, tmp_path / "split.json"))  # and it survives the file
    names = {d: identity_names(d, datasets_root) for d in ("lfw", "cfp")}
    train_keys = {name_key(names[d][f]) for d in ("lfw", "cfp") for f in split.train[d]}
    checked = 0
    for bench, dataset in (("lfw", "lfw"), ("cfp-ff", "cfp"), ("cfp-fp", "cfp")):
        for pair in benchmark_pairs(bench, datasets_root):
            if pair.fold < 6:
                continue
            for rel in (pair.path_a, pair.path_b):
                assert name_key(names[dataset][rel.split("/")[0]]) not in train_keys
                checked += 1
    assert checked == 2 * (6000 // 2 + 3500 + 3500)  # LFW 3000 pairs, CFP 3500 each protocol


def test_training_uses_early_folds_and_unpaired_people(split, datasets_root):
    lfw_train = set(split.train["lfw"])
    fold1 = {p.path_a.split("/")[0] for p in benchmark_pairs("lfw", datasets_root) if p.fold == 1}
    cfp_names = identity_names("cfp", datasets_root)
    cfp_test = {
        name_key(cfp_names[p.path_a.split("/")[0]])
        for bench in ("cfp-ff", "cfp-fp")
        for p in benchmark_pairs(bench, datasets_root)
        if p.fold >= 6
    }
    # LFW folds share no identity, so a fold-1 person is held out only for a CFP test pair
    held_out = fold1 - lfw_train
    assert held_out and all(name_key(n) in cfp_test for n in held_out)
    assert len(fold1 & lfw_train) > 0.9 * len(fold1)
    assert "Aaron_Patterson" in lfw_train  # in no fold of pairs.txt
    assert len(split.train["cfp"]) > 150 and len(lfw_train) > 3000


def test_parse_folds():
    assert parse_folds("6-10") == (6, 7, 8, 9, 10)
    assert parse_folds("1,3-4") == (1, 3, 4)
    with pytest.raises(ConfigError):
        parse_folds("x")
