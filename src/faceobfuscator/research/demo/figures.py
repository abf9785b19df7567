"""Figures a person looks at: what the client computes and what leaves it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.features import normalised_features
from faceobfuscator.protocol.obfuscation import obfuscate, recover, secure_generator

__all__ = ["client_pipeline_demo", "client_pipeline_figure"]


def _symmetric(img: np.ndarray) -> tuple[np.ndarray, float]:
    lim = float(np.percentile(np.abs(img), 99.5)) or 1.0
    return img, lim


def client_pipeline_figure(
    faces: np.ndarray, labels: list[str], config: ProtocolConfig, path: str | Path
) -> Path:
    """One row per face: the aligned face, each retained channel after self-normalisation,
    the obfuscated feature as sent (signed, on a log scale: its magnitude spans ``b**v``),
    and what the server's identity recovery gives back."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feats = normalised_features(faces, config)
    sent = obfuscate(feats, config, generator=secure_generator())
    back = recover(sent, config)
    k = config.n_channels
    cols = 1 + 3 * k
    fig, axes = plt.subplots(
        len(faces), cols, figsize=(1.9 * cols, 2.0 * len(faces)), squeeze=False
    )
    titles = ["aligned face"]
    titles += [f"channel {c} (normalised)" for c in config.channels]
    titles += [f"sent: channel {c}\nsign x log2|e|" for c in config.channels]
    titles += [f"server recovery {c}" for c in config.channels]
    for r, face in enumerate(faces):
        row = axes[r]
        row[0].imshow(face if face.ndim == 3 else face, cmap=None if face.ndim == 3 else "gray")
        row[0].set_ylabel(labels[r], fontsize=7)
        for j in range(k):
            img, lim = _symmetric(feats[r, j].numpy())
            row[1 + j].imshow(img, cmap="gray", vmin=-lim, vmax=lim)
            e = sent[r, j].to(torch.float64)
            logmag = torch.log2(e.abs().clamp_min(1e-38))
            row[1 + k + j].imshow(
                (torch.sign(e) * (logmag - logmag.min())).numpy(), cmap="coolwarm"
            )
            exp = float(torch.log2(e.abs().max()))
            row[1 + k + j].set_xlabel(f"max|e| = 2^{exp:.1f}", fontsize=7)
            img, lim = _symmetric(back[r, j].numpy())
            row[1 + 2 * k + j].imshow(img, cmap="gray", vmin=-lim, vmax=lim)
        for c, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
    fig.suptitle(
        f"FaceObfuscator client: {k} of 64 DCT channels kept, random sign per element and "
        f"{config.b:g}^v per channel, v in {list(config.v_range)}; "
        f"{k * config.image_size**2 * 4 // 1024} KB leave the client",
        fontsize=9,
    )
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def client_pipeline_demo(root: Path, out: Path) -> Path:
    """The client-pipeline figure of four sample photos under ``root`` (AT&T and LFW),
    written to ``out/client_pipeline.png``; returns its path."""
    from faceobfuscator.client.alignment import FaceAligner
    from faceobfuscator.client.images import load_image
    from faceobfuscator.errors import InputError

    config = ProtocolConfig()
    picks = [
        root / "att_faces/s1/1.pgm",
        root / "att_faces/s7/3.pgm",
        root / "lfw/Aaron_Eckhart/Aaron_Eckhart_0001.jpg",
        root / "lfw/Serena_Williams/Serena_Williams_0001.jpg",
    ]
    aligner = FaceAligner(config)
    faces, labels = [], []
    for path in picks:
        if not path.exists():
            raise InputError(f"sample photo {path} is missing; pass --root with the datasets")
        face, outcome = aligner.align_or_centre(load_image(path), fallback="centre")
        faces.append(face)
        labels.append(f"{path.parent.name}\n({outcome})")
    return client_pipeline_figure(np.stack(faces), labels, config, out / "client_pipeline.png")
