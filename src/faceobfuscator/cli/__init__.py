"""The ``faceobf`` command line. Every module of this package that defines
``register(subparsers)`` contributes its sub-commands; handlers take the parsed arguments
and return an exit code. Library work happens in the library, not here."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..errors import FaceObfuscatorError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceobf", description="FaceObfuscator: privacy-preserving face recognition"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FaceObfuscatorError as exc:
        print(f"faceobf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("faceobf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
