"""The training loop end to end, and resuming it."""

import json

import pytest

from faceobfuscator import ConfigError
from faceobfuscator.recognition.modeldir import load_model
from faceobfuscator.research.training.config import TrainConfig
from faceobfuscator.research.training.data import write_pack
from faceobfuscator.research.training.loop import train
from tests.research.training.toys import _toy_dataset


@pytest.mark.slow
def test_train_end_to_end_and_resume(tmp_path, rng):
    aligned, split = _toy_dataset(tmp_path, rng)
    write_pack(tmp_path / "p.npz", aligned_root=aligned, split_path=split)
    config = TrainConfig.from_dict(
        {
            "scheme": "faceobfuscator",
            "backbone": "mobilefacenet",
            "data": {"pack": str(tmp_path / "p.npz")},
            "batch_size": 8,
            "epochs": 1,
            "validation": {"min_images": 4, "per_identity": 2, "max_identities": 4},
            "device": "cpu",
        }
    )
    out = tmp_path / "run"
    model_dir = train(config, out, progress=False)
    for name in ("metrics.jsonl", "curves.png", "checkpoint/train_state.pt", "model/config.json"):
        assert (out / name).is_file(), name
    with pytest.raises(ConfigError, match="--resume"):
        train(config, out, progress=False)
    train(config.replace(epochs=2), out, resume=True, progress=False)
    epochs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[1]["step"] == 2 * epochs[0]["step"] == 2 * ((30 - 8) // 8)
    model = load_model(model_dir)
    assert model.threshold == epochs[1]["threshold"]


def test_train_trains_saves_and_resumes_scheme_parts(tmp_path, rng):
    """A scheme with trainable parts (Cloak) goes through the same loop: its parts and own
    loss train with the network, and land in the checkpoint and the model directory."""
    import torch

    from faceobfuscator.recognition.modeldir import PARTS_NAME
    from faceobfuscator.recognition.schemes import get_scheme

    aligned, split = _toy_dataset(tmp_path, rng)
    write_pack(tmp_path / "p.npz", aligned_root=aligned, split_path=split)
    config = TrainConfig.from_dict(
        {
            "scheme": "cloak",
            "backbone": "mobilefacenet",
            "embedding_size": 64,
            "data": {"pack": str(tmp_path / "p.npz")},
            "batch_size": 8,
            "epochs": 1,
            "optim": {"name": "adamw", "lr": 0.01},
            "validation": {"min_images": 4, "per_identity": 2, "max_identities": 4},
            "device": "cpu",
        }
    )
    out = tmp_path / "run"
    model_dir = train(config, out, progress=False)
    assert (out / "checkpoint" / PARTS_NAME).is_file() and (model_dir / PARTS_NAME).is_file()
    fresh = get_scheme("cloak", config.protocol_config).parts()
    trained = load_model(model_dir).scheme.parts()
    # the noise-maximising term pushed the scales up from their initial value
    assert trained.scales().mean() > fresh.scales().mean()
    train(config.replace(epochs=2), out, resume=True, progress=False)
    again = load_model(out / "model").scheme.parts()
    assert not torch.equal(again.rhos, trained.rhos)
