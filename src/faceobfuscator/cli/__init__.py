"""The ``faceobf`` command line: a thin layer over the library. :data:`COMMANDS` lists the
modules that contribute sub-commands, in the order ``faceobf --help`` shows them; each
defines ``register(subparsers)`` and handlers that take the parsed arguments and return
an exit code. Library work happens in the library, not here; modules import it inside
their handlers so that ``faceobf --help`` and ``faceobf apikey`` stay light (no torch).

To add a command: write ``cli/<name>.py`` with ``register`` and add it to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from faceobfuscator.errors import FaceObfuscatorError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Command modules, in help order. ``pack`` adds ``split`` and ``pack`` to the ``data``
#: group that ``data`` creates, so it comes after it.
COMMANDS = (
    "bench",
    "protect",
    "client",
    "data",
    "demo",
    "evaluate",
    "experiment",
    "keys",
    "pack",
    "privacy",
    "linkage",
    "serve",
    "train",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceobf", description="FaceObfuscator: privacy-preserving face recognition"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug."""
    if isinstance(exc, FaceObfuscatorError):
        return str(exc)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(exc, pydantic.ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        return f"invalid settings: {problems}"
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename or exc}"
    if isinstance(exc, IsADirectoryError | NotADirectoryError | PermissionError):
        return f"{exc.strerror}: {exc.filename}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {exc.filename}" if exc.filename else ""
        return f"disk full{where}; free some space and run the command again"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except KeyboardInterrupt:
        print("faceobf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``faceobf inspect x | head``): stop quietly, and point
        # stdout at /dev/null so that the interpreter's final flush does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        print("faceobf: error: output closed before the command finished", file=sys.stderr)
        return 1
    except Exception as exc:
        message = _user_error(exc)
        if message is None:
            raise
        print(f"faceobf: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
