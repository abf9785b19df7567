"""How the server runs its embedding network on the CPU: the float32 reference, or a
bfloat16 body; and micro-batching of concurrent requests.

``bf16``: a copy of the network with every convolution's BatchNorm folded into it
(``torch.nn.utils.fusion.fuse_conv_bn_eval``), in channels-last memory layout, whose SFace
body (13 depthwise-separable blocks, nearly all the work) runs under torch's CPU autocast
to bfloat16 (native on CPUs with AVX512-BF16 or AMX); the input normalisation, the stem and
the head (BatchNorm, fully connected, BatchNorm1d) stay float32, because the protected
features have a wide range and the embedding's direction is decided in the head.
Measured with ``models/sface-faceobfuscator`` on this 2-core CPU (AVX512-BF16; CPU time,
one thread, the other jobs paused): the float32 reference 31 ms a payload; the body in
bfloat16 alone 34 ms (one payload) and 23 ms a payload in batches of 4; with channels-last
21 and 12 ms; with the folded BatchNorms as well **17 and 10 ms**, cosine to the float32
embeddings >= 0.9998. Autocasting the whole network gave 0.9988 and a bfloat16 copy of
the body's weights 0.9991: outside or at the edge of the 1e-3 the server allows. ONNX
Runtime (1.23, one thread) ran the float32 network no faster than torch (30.6 against
30.1 ms), and torch.jit's ``optimize_for_inference`` (float32, frozen, channels-last) took
21 and 17 ms, so neither is used.

:class:`MicroBatcher` gathers the payloads of concurrent requests that arrive within a
short window into one network call (the first caller runs the batch; the others wait).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from faceobfuscator.errors import ConfigError

__all__ = ["RUNTIMES", "COMPILED_BATCHES", "bf16_network", "CompiledNetwork", "MicroBatcher"]

#: ``fp32``: the network as trained (the reference); ``bf16``: :func:`bf16_network`;
#: ``bf16-compiled``: that network compiled by :class:`CompiledNetwork`.
RUNTIMES = ("fp32", "bf16", "bf16-compiled")

#: the batch sizes :class:`CompiledNetwork` compiles; other sizes are padded or split
COMPILED_BATCHES = (1, 2, 4)


class _Bf16Body(nn.Module):
    """An SFace-shaped network with its ``body`` autocast to bfloat16, the rest float32,
    run in channels-last layout."""

    def __init__(self, network: Any) -> None:
        super().__init__()
        self.net = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = x.contiguous(memory_format=torch.channels_last)
        h = net.stem(net.input_norm(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = net.body(h)
        return net.features(net.fc(net.bn(h.float()).flatten(1)))


def _fold_batchnorms(network: Any) -> Any:
    """A copy of an SFace network in eval mode whose conv -> BatchNorm -> PReLU blocks have
    the BatchNorm folded into the convolution (the same function in eval mode, one pass
    over the feature map fewer)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(network).eval()
    for block in [folded.stem, *folded.body]:
        conv, bn = block[0], block[1]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            block[0] = fuse_conv_bn_eval(conv, bn)
            block[1] = nn.Identity()
    return folded.to(memory_format=torch.channels_last)


def bf16_network(network: nn.Module) -> nn.Module:
    """``network`` (a :class:`~faceobfuscator.recognition.sface.SFaceNet`) for inference
    with its body in bfloat16: same inputs ``(N, C, S, S)`` float32, outputs ``(N, dim)``
    float32. ``network`` itself is left unchanged (the BatchNorms are folded into a copy).

    Raises:
        ConfigError: the network is not SFace-shaped (no stem, body and head to split).
    """
    from faceobfuscator.recognition.sface import SFaceNet

    if not isinstance(network, SFaceNet):
        raise ConfigError(
            f"the bf16 runtime splits SFace networks only, not {type(network).__name__}; "
            "serve this model with FACEOBF_RUNTIME=fp32"
        )
    return _Bf16Body(_fold_batchnorms(network)).eval()


class CompiledNetwork:
    """A network compiled by ``torch.compile`` (TorchInductor, with its ``freezing`` pass:
    weights constant-folded, pointwise operations fused into the convolutions) for a few
    fixed batch sizes, compiled once when the object is made; a batch of another size is
    padded to the next compiled size with zeros, or split into chunks of the largest.

    Compiling needs a C++ compiler on the machine and takes about 25 s a batch size on
    one core of this repository's 2-core CPU (torch caches the result under its temporary
    directory, so a restart is faster). Measured there with ``models/sface-faceobfuscator``
    (bf16 body, CPU time, one thread, other jobs paused): 12.8 / 9.8 / 7.7 ms a payload in
    batches of 1 / 2 / 4, against 22.9 / 16.3 / 13.2 ms for the same network uncompiled;
    cosine to the float32 embeddings >= 0.9997.

    Args:
        network: inputs ``(N, C, S, S)`` float32 -> outputs ``(N, dim)`` float32.
        shape: ``(C, S, S)``, the input shape without the batch.
        batches: the batch sizes to compile, ascending.

    Raises:
        ConfigError: compilation failed (no C++ compiler, an unsupported platform); the
            message names the cause and the ``bf16`` runtime to use instead.
    """

    def __init__(
        self,
        network: nn.Module,
        shape: tuple[int, int, int],
        *,
        batches: tuple[int, ...] = COMPILED_BATCHES,
    ) -> None:
        import torch._inductor.config as inductor_config

        if not batches or list(batches) != sorted(set(batches)) or batches[0] < 1:
            raise ValueError(f"batches must be ascending positive sizes, got {batches}")
        self.batches = tuple(batches)
        self.shape = tuple(shape)
        self._compiled = torch.compile(network, dynamic=False)
        try:
            with inductor_config.patch(freezing=True, cpp_wrapper=True), torch.inference_mode():
                for n in self.batches:  # compile every size now, not on a request
                    self._compiled(torch.zeros((n, *self.shape)))
        except Exception as exc:
            raise ConfigError(
                f"torch.compile could not compile the network ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); serve it with "
                "FACEOBF_RUNTIME=bf16 instead"
            ) from exc

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(N, C, S, S)`` float32 -> ``(N, dim)`` float32, in chunks of compiled
        sizes."""
        largest = self.batches[-1]
        outs = []
        for start in range(0, len(x), largest):
            chunk = x[start : start + largest]
            n = len(chunk)
            size = next(b for b in self.batches if b >= n)
            if size > n:
                chunk = torch.cat([chunk, chunk.new_zeros((size - n, *chunk.shape[1:]))])
            outs.append(self._compiled(chunk)[:n])
        return torch.cat(outs)


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

    A call that finds fewer than ``lanes`` batches running waits ``window_s`` for others,
    then runs everything pending (up to ``max_rows``) as one call of ``fn`` and hands each
    caller its rows; a call that arrives while every lane is busy waits, and when a batch
    ends the oldest waiting call runs the next one in that lane. At most ``lanes`` calls
    of ``fn`` at a time (``fn`` must then be safe to call from several threads, as a torch
    network in inference mode is).

    Args:
        fn: rows ``(N, ...)`` -> results ``(N, ...)``.
        window_s: how long the first caller waits for company (seconds).
        max_rows: rows per ``fn`` call at most.
        lanes: ``fn`` calls that may run at once (for example one per CPU core, each
            with one torch thread).

    Raises:
        ValueError: a negative window, or ``max_rows`` or ``lanes`` below 1.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        *,
        window_s: float = 0.002,
        max_rows: int = 8,
        lanes: int = 1,
    ) -> None:
        if window_s < 0 or max_rows < 1 or lanes < 1:
            raise ValueError(
                f"window_s >= 0, max_rows >= 1 and lanes >= 1, got {window_s}, {max_rows}, {lanes}"
            )
        self.fn, self.window_s, self.max_rows, self.lanes = fn, window_s, max_rows, lanes
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._running = 0  # lanes in use
        self.calls = 0  # fn calls made (for tests and /v1/health)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Results of ``fn`` for the rows of ``x``, as if ``fn(x)`` had been called."""
        me = _Pending(x)
        with self._lock:
            self._queue.append(me)
            if self._running < self.lanes:
                self._running += 1
                me.lead = True
            first = me.lead
        if not first:
            me.wake.wait()
            with self._lock:
                lead = me.lead
            if not lead:  # finished in another caller's batch
                return self._result(me)
            me.wake.clear()  # a lane was handed over: wait below only for our own rows
        elif self.window_s and len(self._queue) < self.max_rows:
            time.sleep(self.window_s)
        while not me.done:
            if not self._run_batch():  # our rows are in another lane's running batch
                me.wake.wait()
        self._hand_over()
        return self._result(me)

    def _run_batch(self) -> bool:
        """Run one batch of the oldest pending rows; False when none were pending."""
        with self._lock:
            batch: list[_Pending] = []
            rows = 0
            while self._queue and (not batch or rows + len(self._queue[0].x) <= self.max_rows):
                batch.append(self._queue.pop(0))
                rows += len(batch[-1].x)
        if not batch:  # the other lanes took everything, our own rows included
            return False
        try:
            out = self.fn(np.concatenate([p.x for p in batch]))
            start = 0
            for p in batch:
                p.out = out[start : start + len(p.x)]
                start += len(p.x)
        except BaseException as exc:  # each caller raises its batch's error
            for p in batch:
                p.error = exc
        with self._lock:
            self.calls += 1
        for p in batch:
            p.done = True
            p.wake.set()
        return True

    def _hand_over(self) -> None:
        """Make the oldest waiting caller run the next batch, or end the run."""
        with self._lock:
            waiting = [p for p in self._queue if not p.lead]
            if waiting:  # this lane passes to the oldest caller without one
                waiting[0].lead = True
                waiting[0].wake.set()
            else:
                self._running -= 1

    @staticmethod
    def _result(p: _Pending) -> np.ndarray:
        if p.error is not None:
            raise p.error
        assert p.out is not None
        return p.out
