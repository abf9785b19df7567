"""`faceobf protect` and `faceobf inspect`: the client side on the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protect", help="photos -> obfuscated payloads (.fobf)")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for the payload files, named by each photo's path relative to the "
        "photos' common folder (a/01.jpg, b/01.jpg -> OUT/a/01.fobf, OUT/b/01.fobf)",
    )
    p.add_argument("--protocol", type=Path, help="protocol config JSON (default: built-in)")
    p.set_defaults(func=_protect)

    i = sub.add_parser("inspect", help="print a payload's header and per-channel statistics")
    i.add_argument("file", type=Path)
    i.add_argument("--protocol", type=Path, help="protocol config JSON (default: built-in)")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_inspect)


def _protocol(path: Path | None):
    from faceobfuscator.protocol.config import ProtocolConfig

    return ProtocolConfig.load(path) if path else ProtocolConfig()


def _protect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from faceobfuscator.client.alignment import FaceAligner
    from faceobfuscator.client.protect import payload_names, protect_photo
    from faceobfuscator.errors import InputError

    config = _protocol(args.protocol)
    names = payload_names(args.images)  # refuses colliding names before writing anything
    aligner = FaceAligner(config)
    failures = 0
    todo = list(zip(args.images, names, strict=True))
    for path, name in tqdm(todo, desc="protect", unit="img", disable=len(todo) < 4):
        try:
            data = protect_photo(path, config, aligner=aligner)
        except InputError as exc:
            failures += 1
            print(f"{path}: {exc}", file=sys.stderr)
            continue
        target = args.out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".fobf.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # never a half-written payload
        print(f"{path} -> {target} ({len(data)} bytes)")
    return 1 if failures else 0


def _inspect(args: argparse.Namespace) -> int:
    from faceobfuscator.client.protect import channel_statistics
    from faceobfuscator.protocol.payload import decode_payload

    config = _protocol(args.protocol)
    payload = decode_payload(args.file.read_bytes(), config)
    report = {
        "file": str(args.file),
        "bytes": args.file.stat().st_size,
        "format_version": payload.version,
        "protocol_hash": payload.config_hash,
        "shape": list(payload.shape),
        "dtype": "float32",
        "channels": [
            {"channel": k, **s}
            for k, s in zip(config.channels, channel_statistics(payload.feature), strict=True)
        ],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['file']}: {report['bytes']} bytes, format v{report['format_version']}")
    print(f"protocol {report['protocol_hash'][:16]}…  shape {tuple(report['shape'])} float32")
    print(f"{'channel':>8} {'mean':>11} {'std':>11} {'max|e|':>11} {'log2 max':>9} {'pos':>6}")
    for c in report["channels"]:
        print(
            f"{c['channel']:>8} {c['mean']:>11.3e} {c['std']:>11.3e} {c['max_abs']:>11.3e} "
            f"{c['log2_max_abs']:>9.2f} {c['positive_share']:>6.3f}"
        )
    return 0
