"""Real server processes for tests: ``faceobf serve`` on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from faceobfuscator.server.keys import key_digest

__all__ = ["ServerProcess", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``faceobf serve`` in a subprocess; its output goes to ``log``."""

    def __init__(
        self,
        *,
        model: Path,
        db_url: str,
        keys: dict[str, str],
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environ = {
            **os.environ,
            "FACEOBF_ADMIN_KEY_HASHES": json.dumps([key_digest(keys["admin"])]),
            "FACEOBF_CLIENT_KEY_HASHES": json.dumps([key_digest(keys["client"])]),
            **(env or {}),
        }
        cmd = [
            sys.executable,
            "-c",
            "from faceobfuscator.cli import main; raise SystemExit(main())",
            "serve",
            "--model", str(model),
            "--db", db_url,
            "--port", str(self.port),
            "--log-level", "warning",
        ]  # fmt: skip
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=environ)

    def wait_ready(self, timeout: float = 90.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                r = httpx.get(self.url + "/v1/health", timeout=2)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server not ready within {timeout} s:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
