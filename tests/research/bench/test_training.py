"""Training-throughput benchmark: the epoch budget."""

from faceobfuscator.research.training.config import TrainConfig


def test_epochs_for_budget_uses_the_slowest_scheme_and_the_cap(monkeypatch):
    from faceobfuscator.research.bench import training as bench

    rates = {"arcface": 1000.0, "arcface-fd": 500.0, "faceobfuscator": 900.0}
    monkeypatch.setattr(
        bench,
        "training_throughput",
        lambda backbone, scheme, *a, **k: {"train_images_per_s": rates[scheme]},
    )
    base = {"backbone": "mobilefacenet", "data": {"pack": "x"}, "device": "cpu", "epochs": 60}
    configs = [TrainConfig.from_dict({**base, "scheme": s}) for s in rates]
    plan = bench.epochs_for_budget(configs, train_images=1000, budget_s=10)
    assert plan["epochs"] == 5  # 10 s at 500 images/s over 1000 images
    assert bench.epochs_for_budget(configs, train_images=1000, budget_s=1000)["epochs"] == 60
