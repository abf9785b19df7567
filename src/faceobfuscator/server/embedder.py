"""What the server needs of a recognition model, and the adapter for a model directory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from faceobfuscator.errors import ConfigError, ModelMismatchError
from faceobfuscator.protocol.config import ProtocolConfig

if TYPE_CHECKING:
    import torch

__all__ = ["Embedder", "ModelEmbedder", "model_hash"]


@runtime_checkable
class Embedder(Protocol):
    """Turns decoded payload features into L2-normalised embeddings.

    Attributes:
        protocol: the protocol the model was trained for; payloads must match it.
        threshold: the calibrated cosine-similarity decision threshold.
        dim: embedding size.
        model_hash: identifies the weights (the embedding cache is keyed by it).
        name: a short description for ``/v1/health``.
    """

    protocol: ProtocolConfig
    threshold: float
    dim: int
    model_hash: str
    name: str

    def embed(self, features: np.ndarray) -> np.ndarray:
        """Sent features ``(N, C, S, S)`` float32 -> embeddings ``(N, dim)`` float32, each
        of unit L2 norm."""
        ...


def model_hash(directory: str | Path) -> str:
    """SHA-256 over a model directory's ``config.json`` and weights: what the embedding
    cache is keyed by."""
    from faceobfuscator.recognition.modeldir import CONFIG_NAME, WEIGHTS_NAME

    digest = hashlib.sha256()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        digest.update((Path(directory) / name).read_bytes())
    return digest.hexdigest()


class ModelEmbedder:
    """An :class:`Embedder` over a model directory (``faceobfuscator.recognition.modeldir``).

    Args:
        directory: the model directory.
        device: torch device.
        threshold: overrides the model's calibrated threshold (required when the model
            has none).
        runtime: ``fp32`` (the network as trained), ``bf16`` (its body in bfloat16, see
            ``server.runtime``; CPU only) or ``bf16-compiled`` (that network compiled by
            ``torch.compile`` for batches of 1, 2 and 4, which takes a minute or two here).

    Raises:
        ModelMismatchError: not a FaceObfuscator model, or no threshold.
        ConfigError: an unknown runtime, or ``bf16`` for a network it cannot split.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        device: str = "cpu",
        threshold: float | None = None,
        runtime: str = "fp32",
    ) -> None:
        from faceobfuscator.recognition.modeldir import load_model
        from faceobfuscator.server.runtime import RUNTIMES, CompiledNetwork, bf16_network

        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
        model = load_model(directory, device=device)
        if model.scheme.name != "faceobfuscator":
            raise ModelMismatchError(
                f"model {directory} was trained for scheme {model.scheme.name!r}; the server "
                "accepts FaceObfuscator payloads only, so it needs a 'faceobfuscator' model"
            )
        chosen = threshold if threshold is not None else model.threshold
        if chosen is None:
            raise ModelMismatchError(
                f"model {directory} has no calibrated threshold; set one in the server "
                "settings (FACEOBF_THRESHOLD)"
            )
        self._model = model
        self.runtime = runtime
        self._network: Callable[[torch.Tensor], torch.Tensor] | None = (
            bf16_network(model.network) if runtime != "fp32" else None
        )
        self.protocol: ProtocolConfig = model.protocol
        if self._network is not None and runtime == "bf16-compiled":
            channels = model.scheme.in_channels
            size = self.protocol.image_size
            self._network = CompiledNetwork(self._network, (channels, size, size))
        self.threshold = float(chosen)
        self.dim = int(model.embedding_size)
        self.model_hash = model_hash(directory)
        random = bool(model.config.get("extra", {}).get("random", False))
        self.name = f"{model.scheme.name}/{model.backbone_name}" + (
            " (UNTRAINED random weights)" if random else ""
        )

    def embed(self, features: np.ndarray) -> np.ndarray:
        import torch

        sent = torch.from_numpy(np.array(features, dtype=np.float32))  # a writable copy
        if self._network is None:
            return self._model.embed_sent(sent).numpy()
        with torch.inference_mode():
            e = self._network(self._model.scheme.server_input(sent).float())
            return torch.nn.functional.normalize(e, dim=1).numpy()
