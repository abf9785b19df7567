"""``faceobf bench security``: what sealing, challenges and encrypted storage cost."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def add_security_parser(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "security",
        help="added latency (p50, p99) and bytes of sealed payloads and encrypted templates",
    )
    p.add_argument(
        "--db", help="database of the challenges (default: a temporary SQLite file, FULL sync)"
    )
    p.add_argument("--n", type=int, default=500, help="timed repetitions of each step")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.set_defaults(func=_security)


def _security(args: argparse.Namespace) -> int:
    from ..config import ProtocolConfig
    from ..security.costs import security_costs
    from ..server.storage import open_storage

    with tempfile.TemporaryDirectory() as tmp:
        storage = open_storage(args.db or f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            result = security_costs(storage, ProtocolConfig(), n=args.n)
        finally:
            storage.close()
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0
