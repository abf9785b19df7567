"""``faceobf client enroll|verify|identify|delete``: the SDK on the command line.

The API key comes from the environment (``FACEOBF_API_KEY``) or a file, never from the
command line, where other users could read it.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("client", help="talk to a recognition server (photos stay local)")
    c.add_argument(
        "--url", default=os.environ.get("FACEOBF_URL", "http://127.0.0.1:8000"), help="server"
    )
    c.add_argument("--key-file", type=Path, help="file holding the API key")
    c.add_argument(
        "--server-key-fingerprint",
        default=os.environ.get("FACEOBF_SERVER_KEY_FINGERPRINT"),
        help="pin the server's sealing key (faceobf keys show); payloads are then always "
        "sealed and a server with another key, or none, is refused",
    )
    c.add_argument(
        "--plain",
        action="store_true",
        help="send plain payloads even if the server can take sealed ones (no replay protection)",
    )
    ops = c.add_subparsers(dest="op", required=True, metavar="OP")

    e = ops.add_parser(
        "enroll",
        help="enrol photos of one subject, all or nothing (administrator key)",
        description="Every photo is protected first; if one fails (no face, several faces "
        "of similar size, unreadable), nothing is enrolled and each failure is listed.",
    )
    e.add_argument("subject")
    e.add_argument("images", nargs="+", type=Path)
    _select(e, "single")
    e.set_defaults(func=_enroll)

    v = ops.add_parser("verify", help="1:1 against an enrolled subject")
    v.add_argument("subject")
    v.add_argument("image", type=Path)
    _select(v, "largest")
    v.set_defaults(func=_verify)

    i = ops.add_parser("identify", help="1:N against the gallery")
    i.add_argument("image", type=Path)
    i.add_argument("--top-k", type=int, default=5)
    _select(i, "largest")
    i.set_defaults(func=_identify)

    d = ops.add_parser("delete", help="erase a subject (administrator key)")
    d.add_argument("subject")
    d.set_defaults(func=_delete)


def _select(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--select",
        choices=["single", "largest", "central"],
        default=default,
        help=f"which face of a photo (default {default}; single refuses photos with several "
        "faces of similar size); the answer gives the face's box",
    )


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from faceobfuscator.client.sdk import Client
    from faceobfuscator.errors import ConfigError

    if args.key_file is not None:
        key = args.key_file.read_text().strip()
    else:
        key = os.environ.get("FACEOBF_API_KEY", "")
    if not key:
        raise ConfigError("no API key: set FACEOBF_API_KEY or pass --key-file")
    return Client(
        args.url,
        key,
        sealed=False if args.plain else None,
        server_key_fingerprint=args.server_key_fingerprint,
    )


def _print(obj: object) -> None:
    print(json.dumps(obj, indent=2))


def _enroll(args: argparse.Namespace) -> int:
    from faceobfuscator.client.sdk import BatchEnrolmentError

    with _client(args) as client:
        try:
            done = client.enroll_many(args.subject, args.images, select=args.select)
        except BatchEnrolmentError as exc:
            _print({"enrolled": [], "errors": [asdict(p) for p in exc.problems]})
            raise
    _print(
        {
            "enrolled": [
                {"image": str(p), **asdict(e)} for p, e in zip(args.images, done, strict=True)
            ]
        }
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.verify(args.subject, args.image, select=args.select)
    _print(asdict(result))
    return 0 if result.match else 1


def _identify(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.identify(args.image, top_k=args.top_k, select=args.select).to_dict())
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete_subject(args.subject)
    _print({"deleted": args.subject})
    return 0
