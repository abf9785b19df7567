"""`faceobf demo`: the main job behind `make demo`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="align and protect sample faces, then run the server demo")
    p.add_argument("--root", type=Path, default=Path("../shared/datasets"))
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--client-only", action="store_true", help="only the client figure")
    p.set_defaults(func=_demo)


def _client_figure(root: Path, out: Path) -> Path:
    import numpy as np

    from faceobfuscator.client.alignment import FaceAligner, load_image
    from faceobfuscator.errors import InputError
    from faceobfuscator.protocol.config import ProtocolConfig
    from faceobfuscator.research.demo.figures import client_pipeline_figure

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


def _demo(args: argparse.Namespace) -> int:
    figure = _client_figure(args.root, args.out)
    print(f"client figure: {figure}")
    if args.client_only:
        return 0
    try:
        from faceobfuscator.research.demo.run import run_demo
    except ImportError:
        print("server demo not available in this build")
        return 0
    report = run_demo(root=args.root, out=args.out)
    print(f"server demo report: {report}")
    return 0
