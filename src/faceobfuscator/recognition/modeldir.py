"""Model directories: an embedding network's weights (``model.safetensors``, no
classification head), the scheme's trainable parts when it has any
(``scheme.safetensors``, see :meth:`~faceobfuscator.recognition.schemes.Scheme.parts`)
and a ``config.json`` holding everything needed to use it (scheme, backbone, protocol
configuration and its hash, the parts' file and SHA-256, decision threshold, metrics, the
command that made it).

:func:`load_model` never unpickles anything: weights come from safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.backbones import build_backbone, list_backbones
from faceobfuscator.recognition.schemes import Scheme, get_scheme, list_schemes

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "PARTS_NAME",
    "MODEL_FORMAT",
    "RecognitionModel",
    "save_model",
    "load_model",
    "read_model_config",
    "load_scheme_parts",
    "load_scheme",
    "make_random_model",
    "unwrap",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PARTS_NAME = "scheme.safetensors"
MODEL_FORMAT = "faceobfuscator-model/1"
_REQUIRED = ("format", "scheme", "backbone", "in_channels", "embedding_size", "protocol")


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_model(
    directory: str | Path,
    *,
    backbone_name: str,
    backbone: nn.Module,
    scheme_name: str,
    protocol: ProtocolConfig,
    threshold: float | None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    command: str | None = None,
    scheme_parts: nn.Module | None = None,
) -> Path:
    """Write ``backbone``'s weights and its ``config.json`` into ``directory`` (created if
    needed; files replaced atomically). ``command`` defaults to this process's command line.
    ``scheme_parts``: the trained parts of a scheme that has them (the training run's
    ``scheme.parts()``); left out, a fresh scheme's initial parts are saved. Returns the
    directory.

    Raises:
        ConfigError: unknown scheme or backbone, a non-finite threshold, parts given to a
            scheme without parts, or parts that do not fit the scheme's.
    """
    from safetensors.torch import save as st_save

    scheme = get_scheme(scheme_name, protocol)
    parts_state = _parts_state(scheme, scheme_parts)
    if backbone_name not in list_backbones():
        raise ConfigError(f"unknown backbone {backbone_name!r}; known: {list_backbones()}")
    if threshold is not None and not math.isfinite(threshold):
        raise ConfigError(f"threshold={threshold!r} must be a finite cosine or None")
    net = unwrap(backbone)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    embedding_size = _embedding_size(state)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "format": MODEL_FORMAT,
        "scheme": scheme.name,
        "backbone": backbone_name,
        "in_channels": scheme.in_channels,
        "embedding_size": embedding_size,
        "protocol": protocol.to_dict(),
        "protocol_hash": protocol.hash,
        "threshold": None if threshold is None else float(threshold),
        "metrics": metrics or {},
        "command": command if command is not None else shlex.join(sys.argv),
        "extra": extra or {},
    }
    if parts_state is not None:
        blob = st_save(parts_state, metadata={"format": MODEL_FORMAT, "scheme": scheme.name})
        config["scheme_parts"] = {"file": PARTS_NAME, "sha256": hashlib.sha256(blob).hexdigest()}
        _write_atomic(out / PARTS_NAME, blob)
    _write_atomic(out / WEIGHTS_NAME, st_save(state, metadata={"format": MODEL_FORMAT}))
    _write_atomic(out / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    return out


def _parts_state(scheme: Scheme, given: nn.Module | None) -> dict[str, torch.Tensor] | None:
    mine = scheme.parts()
    if mine is None:
        if given is not None:
            raise ConfigError(f"scheme {scheme.name!r} has no trainable parts to save")
        return None
    state = unwrap(given if given is not None else mine).state_dict()
    expected = {k: tuple(v.shape) for k, v in mine.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        raise ConfigError(
            f"the parts given do not fit scheme {scheme.name!r}: tensors {got}, expected {expected}"
        )
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _embedding_size(state: dict[str, torch.Tensor]) -> int:
    key = "features.running_mean"
    if key not in state:
        raise ConfigError(f"backbone has no {key!r}: not an embedding network of this package")
    return int(state[key].shape[0])


def read_model_config(directory: str | Path) -> dict[str, Any]:
    """The validated ``config.json`` of a model directory."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{path} not found; is {directory} a model directory?")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise ConfigError(f"{path} lacks {missing}; it was not written by save_model")
    if config["format"] != MODEL_FORMAT:
        raise ConfigError(f"{path}: format {config['format']!r}, expected {MODEL_FORMAT!r}")
    if config["scheme"] not in list_schemes():
        raise ConfigError(f"{path}: unknown scheme {config['scheme']!r}; known: {list_schemes()}")
    if config["backbone"] not in list_backbones():
        raise ConfigError(
            f"{path}: unknown backbone {config['backbone']!r}; known: {list_backbones()}"
        )
    protocol = ProtocolConfig.from_dict(config["protocol"])
    if config.get("protocol_hash", protocol.hash) != protocol.hash:
        raise ConfigError(
            f"{path}: protocol_hash {config['protocol_hash']} does not match its protocol "
            f"({protocol.hash}); the file was edited or damaged"
        )
    return config


class RecognitionModel:
    """A loaded embedding network with its scheme, protocol and threshold.

    Attributes:
        scheme: the :class:`~faceobfuscator.recognition.schemes.Scheme` it was trained for.
        protocol: the protocol configuration.
        threshold: calibrated cosine threshold (FAR = 1e-3 on validation pairs) or None.
        backbone_name: registry name of the network.
        network: the ``nn.Module`` in eval mode.
        config: the whole ``config.json``.
    """

    def __init__(
        self, network: nn.Module, scheme: Scheme, config: dict[str, Any], device: torch.device
    ) -> None:
        self.network = network.eval()
        self.scheme = scheme
        self.protocol = scheme.protocol
        self.config = config
        self.threshold: float | None = config.get("threshold")
        self.backbone_name: str = config["backbone"]
        self.embedding_size: int = config["embedding_size"]
        self.device = device

    def embed(self, server_input: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings ``(N, embedding_size)`` float32 on the CPU of network
        inputs ``(N, in_channels, S, S)``."""
        s = self.protocol.image_size
        x = server_input
        shape = (self.scheme.in_channels, s, s)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"expected network inputs (N, {shape[0]}, {s}, {s}), got {got}")
        if not torch.is_floating_point(x):
            raise InputError(f"expected float network inputs, got {x.dtype}")
        with torch.inference_mode():
            e = self.network(x.to(self.device, torch.float32))
            return nn.functional.normalize(e.float(), dim=1).cpu()

    def embed_sent(self, sent: torch.Tensor) -> torch.Tensor:
        """Embeddings of what clients sent: :meth:`embed` of the scheme's server input."""
        return self.embed(self.scheme.server_input(sent))

    def __repr__(self) -> str:
        return (
            f"RecognitionModel(scheme={self.scheme.name!r}, backbone={self.backbone_name!r}, "
            f"threshold={self.threshold})"
        )


def load_scheme_parts(directory: str | Path, scheme: Scheme, config: dict[str, Any]) -> None:
    """Load the trained parts of ``directory`` (``config`` its :func:`read_model_config`)
    into ``scheme.parts()``, after checking the file's SHA-256; nothing for a scheme
    without parts.

    Raises:
        ConfigError: the scheme has parts and the directory none (or the reverse), the file
            is missing, altered (hash mismatch) or does not fit the scheme's parts.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    parts, entry = scheme.parts(), config.get("scheme_parts")
    if parts is None and entry is None:
        return
    if parts is None or not isinstance(entry, dict):
        has = "has" if entry else "has no"
        wants = "needs them" if parts is not None else "has none"
        raise ConfigError(
            f"{directory} {has} scheme parts but scheme {scheme.name!r} {wants}; "
            "the directory was written for another version of the scheme"
        )
    path = Path(directory) / str(entry.get("file", PARTS_NAME))
    if not path.is_file():
        raise ConfigError(f"{path} not found; the model directory is incomplete")
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != entry.get("sha256"):
        raise ConfigError(f"{path}: SHA-256 differs from config.json; the file was altered")
    try:
        parts.load_state_dict(st_load(blob), strict=True)
    except (SafetensorError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"{path} does not fit scheme {scheme.name!r}'s parts:\n{exc}") from None


def load_scheme(directory: str | Path) -> Scheme:
    """The scheme of a model directory with its trained parts loaded (in eval mode, on the
    CPU), without building the network: what a client or an attacker's copy of the
    client needs."""
    config = read_model_config(directory)
    scheme = get_scheme(config["scheme"], ProtocolConfig.from_dict(config["protocol"]))
    load_scheme_parts(directory, scheme, config)
    parts = scheme.parts()
    if parts is not None:
        parts.eval()
    return scheme


def load_model(directory: str | Path, *, device: str | torch.device = "cpu") -> RecognitionModel:
    """Load a model directory written by :func:`save_model` (safetensors only); the
    scheme's trained parts (if any) are loaded too, on ``device`` and in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_model_config(directory)
    protocol = ProtocolConfig.from_dict(config["protocol"])
    scheme = get_scheme(config["scheme"], protocol)
    load_scheme_parts(directory, scheme, config)
    if config["in_channels"] != scheme.in_channels:
        raise ConfigError(
            f"{directory}: in_channels {config['in_channels']} but scheme {scheme.name!r} "
            f"feeds {scheme.in_channels} channels under this protocol"
        )
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise ConfigError(f"{weights} not found; the model directory is incomplete")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"{weights} is not a readable safetensors file: {exc}") from None
    network = build_backbone(config["backbone"], scheme.in_channels, config["embedding_size"])
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"{weights} does not fit a {config['backbone']} with {scheme.in_channels} input "
            f"channels and {config['embedding_size']}-d embeddings:\n{exc}"
        ) from None
    dev = torch.device(device)
    parts = scheme.parts()
    if parts is not None:
        parts.to(dev).eval()
    return RecognitionModel(network.to(dev), scheme, config, dev)


def make_random_model(
    directory: str | Path,
    *,
    scheme: str = "faceobfuscator",
    backbone: str = "mobilefacenet",
    seed: int = 0,
    protocol: ProtocolConfig | None = None,
    threshold: float | None = 0.3,
    embedding_size: int = 512,
) -> Path:
    """A randomly initialised (untrained) model directory, for tests of code that loads
    models. Its embeddings are deterministic in ``seed`` but identify nobody."""
    protocol = protocol or ProtocolConfig()
    in_channels = get_scheme(scheme, protocol).in_channels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_backbone(backbone, in_channels, embedding_size)
    return save_model(
        directory,
        backbone_name=backbone,
        backbone=net,
        scheme_name=scheme,
        protocol=protocol,
        threshold=threshold,
        metrics={},
        extra={"random": True, "seed": seed},
        command=f"make_random_model(scheme={scheme!r}, backbone={backbone!r}, seed={seed})",
    )
