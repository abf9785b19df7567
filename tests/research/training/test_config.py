"""Training configs: errors, and every committed config in configs/ loads."""

import pytest

from faceobfuscator import ConfigError
from faceobfuscator.research.training.config import TrainConfig, load_train_config

REPO_CONFIGS = sorted(
    p
    for p in __import__("pathlib").Path(__file__).parents[3].glob("configs/*.json")
    if "backbone" in p.read_text()
)


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
