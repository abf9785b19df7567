"""A command group (``faceobf data ...``, ``faceobf eval ...``) that several CLI modules
extend: the first module to ask creates it, later ones add their actions to it."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["command_group", "named_paths"]


def command_group(
    subparsers: argparse._SubParsersAction, name: str, help_text: str, dest: str
) -> argparse._SubParsersAction:
    """The sub-command action of the top-level command ``name``, created if absent."""
    parser = subparsers.choices.get(name)
    if parser is None:
        parser = subparsers.add_parser(name, help=help_text)
        return parser.add_subparsers(dest=dest, required=True, metavar="ACTION")
    for action in parser._actions:  # argparse keeps a group's sub-commands only here
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=dest, required=True, metavar="ACTION")


def named_paths(specs: list[str], *, form: str = "NAME=DIR") -> dict[str, Path]:
    """``NAME=PATH`` arguments as a dict; a malformed one raises ``ConfigError`` naming
    ``form``."""
    from faceobfuscator.errors import ConfigError

    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"expected {form}, got {spec!r}")
        out[name] = Path(path)
    return out
