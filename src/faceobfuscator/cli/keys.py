"""``faceobf keys``: the server's sealing key and the master key of encrypted templates.

    faceobf keys new-server --out server.key   # sealing key pair; prints the fingerprint
    faceobf keys show server.key               # key id, fingerprint, public key
    faceobf keys new-master                    # a master key for FACEOBF_MASTER_KEY
    faceobf keys rotate --env-file server.env  # move the gallery to the current master key

Master keys never appear on the command line (where ``ps`` would show them): ``rotate``
reads them from the server's settings, ``FACEOBF_MASTER_KEY`` being the new key and
``FACEOBF_PREVIOUS_MASTER_KEYS`` holding the old one.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="sealing and master keys: make, show, rotate")
    ks = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    p = ks.add_parser("new-server", help="make the server's sealing key pair (file mode 0600)")
    p.add_argument("--out", type=Path, required=True, help="private key file to write")
    p.add_argument("--force", action="store_true", help="replace an existing key file")
    p.set_defaults(func=_new_server)

    p = ks.add_parser("show", help="key id, fingerprint and public key of a sealing key")
    p.add_argument("key", type=Path)
    p.set_defaults(func=_show)

    p = ks.add_parser("new-master", help="print a fresh master key (base64) and its id")
    p.set_defaults(func=_new_master)

    p = ks.add_parser(
        "rotate",
        help="move every stored template to the current master key (resumable, online)",
        description="Re-wraps (or, with --reencrypt, re-encrypts) every template under "
        "FACEOBF_MASTER_KEY. Run API processes with the new key as FACEOBF_MASTER_KEY and the "
        "old one in FACEOBF_PREVIOUS_MASTER_KEYS meanwhile, and drop the old one afterwards. "
        "Interrupted, it goes on where it stopped when run again.",
    )
    p.add_argument("--env-file", type=Path, help="dotenv file of FACEOBF_* settings")
    p.add_argument("--db", help="sqlite:///path or postgresql://... (FACEOBF_DB_URL)")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--from-key-id", help="the old key's id, when several previous keys are set"
    )
    source.add_argument(
        "--from-plain", action="store_true", help="encrypt a gallery stored in plain mode"
    )
    p.add_argument("--batch", type=int, default=500, help="templates per transaction")
    p.add_argument("--reencrypt", action="store_true", help="fresh data keys as well")
    p.set_defaults(func=_rotate)


def _new_server(args: argparse.Namespace) -> int:
    from faceobfuscator.protocol.sealing import ServerKeyPair

    pair = ServerKeyPair.generate()
    pair.save(args.out, overwrite=args.force)
    print(f"wrote {args.out} (mode 0600); set FACEOBF_SEALING_KEY_FILE={args.out.resolve()}")
    print(f"key id       {pair.key_id}")
    print(f"fingerprint  {pair.fingerprint}   (pin this in clients)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from faceobfuscator.protocol.sealing import ServerKeyPair

    pair = ServerKeyPair.load(args.key)
    print(f"key id       {pair.key_id}")
    print(f"fingerprint  {pair.fingerprint}")
    print(f"public key   {pair.public_key.to_base64()}")
    return 0


def _new_master(args: argparse.Namespace) -> int:
    from faceobfuscator.server.security.envelope import MasterKey

    key = MasterKey.generate()
    print(f"# master key id {key.key_id}", file=sys.stderr)
    print(key.to_base64())
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from faceobfuscator.errors import RotationError
    from faceobfuscator.server.security.rotation import SQLEnvelopeStore, rotate
    from faceobfuscator.server.settings import ServerSettings
    from faceobfuscator.server.storage import open_storage

    overrides: dict[str, object] = {"model_dir": Path(".")}  # rotation needs no model
    if args.db is not None:
        overrides["db_url"] = args.db
    settings = ServerSettings.load(args.env_file, **overrides)
    keyring = settings.master_keyring()
    if keyring is None:
        raise RotationError("FACEOBF_MASTER_KEY is not set: it is the key to rotate to")
    new = keyring.current
    old = None
    if not args.from_plain:
        previous = [keyring.get(k) for k in keyring.key_ids if k != new.key_id]
        if args.from_key_id is not None:
            previous = [k for k in previous if k is not None and k.key_id == args.from_key_id]
        if len(previous) != 1 or previous[0] is None:
            raise RotationError(
                f"expected exactly one old key in FACEOBF_PREVIOUS_MASTER_KEYS (or --from-key-id "
                f"naming one), found {len(previous)}; use --from-plain for a plain gallery"
            )
        old = previous[0]
    storage = open_storage(settings.db_url, synchronous=settings.sqlite_synchronous)
    try:
        report = rotate(
            SQLEnvelopeStore(storage),
            old,
            new,
            batch=args.batch,
            reencrypt=args.reencrypt,
            on_batch=lambda p: print(
                f"pass {p.passes}: {p.moved} moved, up to template {p.cursor}", file=sys.stderr
            ),
        )
    finally:
        storage.close()
    out = asdict(report)
    print(json.dumps(out, indent=2))
    print(
        f"done: every template is under master key {report.new_key_id}; remove the old key "
        "from FACEOBF_PREVIOUS_MASTER_KEYS",
        file=sys.stderr,
    )
    return 0
