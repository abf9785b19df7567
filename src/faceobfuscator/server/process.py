"""A recognition server in a child process on loopback: for the demo, the benchmark and
tests. It runs ``faceobf serve`` with settings passed through the environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from faceobfuscator.errors import FaceObfuscatorError

__all__ = ["LocalServer", "free_port"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """``faceobf serve --model MODEL --db DB_URL`` on a free loopback port.

    Args:
        model: the model directory.
        db_url: the gallery database.
        log: file receiving the server's output.
        env: extra ``FACEOBF_*`` settings (API key digests, cache key, ...).
        workers: uvicorn worker processes.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        *,
        model: str | Path,
        db_url: str,
        log: str | Path,
        env: dict[str, str] | None = None,
        workers: int = 1,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log)
        self._cmd = [
            sys.executable,
            "-c",
            "from faceobfuscator.cli import main; raise SystemExit(main())",
            "serve",
            "--model", str(model),
            "--db", db_url,
            "--port", str(self.port),
            "--workers", str(workers),
            "--log-level", "warning",
        ]  # fmt: skip
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 120.0) -> dict[str, Any]:
        """Start the process and wait until ``/v1/health`` answers; returns its answer."""
        self.launch()
        return self.wait_ready(timeout=timeout)

    def launch(self) -> None:
        """Start the process without waiting for it."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self._cmd, stdout=out, stderr=subprocess.STDOUT, env=self._env
            )

    def wait_ready(self, *, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until ``/v1/health`` answers; returns its answer."""
        if self.proc is None:
            raise FaceObfuscatorError("the server was not launched")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise FaceObfuscatorError(
                    f"the server exited with code {self.proc.returncode}:\n{self.tail()}"
                )
            try:
                r = httpx.get(self.url + "/v1/health", timeout=2)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise FaceObfuscatorError(f"the server did not answer within {timeout} s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        """The end of the server's output."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), SIGKILL after 30 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
