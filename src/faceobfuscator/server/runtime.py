"""How the server runs its embedding network on the CPU: the float32 reference, or a
bfloat16 body; and micro-batching of concurrent requests.

``bf16``: the SFace body (13 depthwise-separable blocks, nearly all the work) runs under
torch's CPU autocast to bfloat16 (native on CPUs with AVX512-BF16 or AMX); the input
normalisation, the stem and the head (BatchNorm, fully connected, BatchNorm1d) stay
float32, because the protected features have a wide range and the embedding's direction
is decided in the head. Measured with ``models/sface-faceobfuscator`` on a 2-core CPU
with AVX512-BF16 shared with a training run (CPU time, one thread): cosine to the float32
embeddings >= 0.9996 (24 synthetic faces; 0.9997 on 64 LFW faces), 21 ms against 34 ms
for one payload, 18 against 32 ms a payload in batches of 4. Autocasting the whole
network gave 0.9988 and a bfloat16 copy of the body's weights 0.9991: outside or at the
edge of the 1e-3 the server allows. ONNX Runtime (1.23, one thread) ran the float32
network no faster than torch (30.6 against 30.1 ms), so it is not used.

:class:`MicroBatcher` gathers the payloads of concurrent requests that arrive within a
short window into one network call (the first caller runs the batch; the others wait).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from faceobfuscator.errors import ConfigError

__all__ = ["RUNTIMES", "bf16_network", "MicroBatcher"]

#: ``fp32``: the network as trained (the reference); ``bf16``: :func:`bf16_network`.
RUNTIMES = ("fp32", "bf16")


class _Bf16Body(nn.Module):
    """An SFace-shaped network with its ``body`` autocast to bfloat16, the rest float32."""

    def __init__(self, network: Any) -> None:
        super().__init__()
        self.net = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        h = net.stem(net.input_norm(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = net.body(h)
        return net.features(net.fc(net.bn(h.float()).flatten(1)))


def bf16_network(network: nn.Module) -> nn.Module:
    """``network`` (a :class:`~faceobfuscator.recognition.sface.SFaceNet`) with its body
    in bfloat16: same inputs ``(N, C, S, S)`` float32, outputs ``(N, dim)`` float32.

    Raises:
        ConfigError: the network is not SFace-shaped (no stem, body and head to split).
    """
    from faceobfuscator.recognition.sface import SFaceNet

    if not isinstance(network, SFaceNet):
        raise ConfigError(
            f"the bf16 runtime splits SFace networks only, not {type(network).__name__}; "
            "serve this model with FACEOBF_RUNTIME=fp32"
        )
    return _Bf16Body(network).eval()


class _Pending:
    """One call's rows; ``wake`` is set once it is ``done`` or made the ``lead``er."""

    __slots__ = ("x", "out", "error", "done", "lead", "wake")

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.out: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False
        self.wake = threading.Event()


class MicroBatcher:
    """Run ``fn`` on the rows of concurrent calls together.

    A call with no batch running waits ``window_s`` for others, then runs everything
    pending (up to ``max_rows``) as one call of ``fn`` and hands each caller its rows; a
    call that arrives meanwhile waits, and when the batch ends the oldest waiting call
    runs the next one. One ``fn`` call at a time.

    Args:
        fn: rows ``(N, ...)`` -> results ``(N, ...)``.
        window_s: how long the first caller waits for company (seconds).
        max_rows: rows per ``fn`` call at most.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        *,
        window_s: float = 0.002,
        max_rows: int = 8,
    ) -> None:
        if window_s < 0 or max_rows < 1:
            raise ValueError(f"window_s >= 0 and max_rows >= 1, got {window_s}, {max_rows}")
        self.fn, self.window_s, self.max_rows = fn, window_s, max_rows
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._running = False
        self.calls = 0  # fn calls made (for tests and /v1/health)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Results of ``fn`` for the rows of ``x``, as if ``fn(x)`` had been called."""
        me = _Pending(x)
        with self._lock:
            self._queue.append(me)
            if not self._running:
                self._running = me.lead = True
        if not me.lead:
            me.wake.wait()
            if me.done:  # finished in another caller's batch
                return self._result(me)
        elif self.window_s and len(self._queue) < self.max_rows:
            time.sleep(self.window_s)
        while not me.done:
            self._run_batch()
        self._hand_over()
        return self._result(me)

    def _run_batch(self) -> None:
        with self._lock:
            batch: list[_Pending] = []
            rows = 0
            while self._queue and (not batch or rows + len(self._queue[0].x) <= self.max_rows):
                batch.append(self._queue.pop(0))
                rows += len(batch[-1].x)
        try:
            out = self.fn(np.concatenate([p.x for p in batch]))
            self.calls += 1
            start = 0
            for p in batch:
                p.out = out[start : start + len(p.x)]
                start += len(p.x)
        except BaseException as exc:  # each caller raises its batch's error
            for p in batch:
                p.error = exc
        for p in batch:
            p.done = True
            p.wake.set()

    def _hand_over(self) -> None:
        """Make the oldest waiting caller run the next batch, or end the run."""
        with self._lock:
            if self._queue:
                self._queue[0].lead = True
                self._queue[0].wake.set()
            else:
                self._running = False

    @staticmethod
    def _result(p: _Pending) -> np.ndarray:
        if p.error is not None:
            raise p.error
        assert p.out is not None
        return p.out
