"""``faceobf``'s thin layer: the explicit command list, one error line for user errors,
and commands that stay light (no torch for ``apikey`` or ``--help``)."""

from __future__ import annotations

import argparse
import errno
import subprocess
import sys
from pathlib import Path

import pytest

from faceobfuscator.cli import COMMANDS, build_parser, main
from faceobfuscator.errors import NoTemplatesError


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_is_listed_and_bench_is_one_group() -> None:
    commands = _subcommands(build_parser())
    assert set(commands) == {
        "bench", "protect", "inspect", "client", "data", "demo", "eval",
        "experiment", "keys", "privacy", "serve", "apikey", "train",
    }  # fmt: skip
    assert "bench-server" not in commands
    assert set(_subcommands(commands["bench"])) == {
        "transform",
        "training",
        "server",
        "security",
        "detectors",
        "photo",
    }
    assert set(_subcommands(commands["data"])) >= {"prepare", "split", "pack"}
    assert len(COMMANDS) == len(set(COMMANDS))


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("argv", [["apikey"], ["--help"]])
def test_light_commands_do_not_import_torch(argv: list[str]) -> None:
    code = (
        "import sys\nfrom faceobfuscator.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_missing_file_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["inspect", str(tmp_path / "absent.fobf")])
    err = capsys.readouterr().err
    assert status != 0
    assert err.count("\n") == 1 and err.startswith("faceobf: error: no such file:")
    assert "absent.fobf" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "out.json"),
            "disk full writing out.json",
        ),
        (NoTemplatesError("alice"), "subject 'alice' has no enrolled template"),
        (
            FileNotFoundError(errno.ENOENT, "No such file", "m/config.json"),
            "no such file: m/config.json",
        ),
    ],
)
def test_user_errors_become_one_line(
    exc: Exception,
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr("faceobfuscator.cli.serve._apikey", fail)
    assert main(["apikey"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("faceobf: error: ")
    assert expected in err and err.count("\n") == 1


def test_settings_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACEOBF_THRESHOLD", "not-a-number")
    monkeypatch.setattr("faceobfuscator.cli.serve._serve", _load_settings)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("faceobf: error: invalid settings:") and err.count("\n") == 1


def _load_settings(args: argparse.Namespace) -> int:
    from faceobfuscator.server.settings import ServerSettings

    ServerSettings.load()
    return 0


def test_bugs_still_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(args: argparse.Namespace) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr("faceobfuscator.cli.serve._apikey", bug)
    with pytest.raises(KeyError):
        main(["apikey"])


def test_closed_pipe_is_one_error_line() -> None:
    # stdout is a pipe whose reader is gone, as in ``faceobf apikey | head -0``
    code = (
        "import os, sys\nr, w = os.pipe()\nos.close(r)\nos.dup2(w, 1)\n"
        "from faceobfuscator.cli import main\nsys.exit(main(['apikey']))"
    )
    result = _run(code)
    assert result.returncode == 1
    assert result.stderr.startswith("faceobf: error: output closed")
    assert result.stderr.count("\n") == 1, result.stderr
