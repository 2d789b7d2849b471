"""Helpers of the API tests: a real uvicorn server on loopback, in a thread or a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

SHIPPED = Path(__file__).resolve().parents[1] / "src/framedex/indexer/models/synthetic-shapes"


def model_spec(tiny_model: str) -> str:
    """The shipped model when its weights exist, else the tiny random test model."""
    if (SHIPPED / "open_clip_model.safetensors").is_file():
        return "synthetic-shapes"
    return tiny_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: "
                               f"{proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server at {base} not ready after {timeout}s")


class ThreadServer:
    """``uvicorn.Server`` running ``create_app(settings)`` in a background thread."""

    def __init__(self, settings: Any):
        import uvicorn

        from framedex.api.app import create_app

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_ready(self.base)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_cli_server(db: Path, model: str, *extra: str, port: int | None = None
                     ) -> tuple[subprocess.Popen, str]:
    """``framedex serve`` in a subprocess (its own process group, so kill -9 is clean)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "framedex.cli", "serve", "--db", str(db), "--model", model,
           "--port", str(port), "--device", "cpu", "--create", *extra]
    env = dict(os.environ, FRAMEDEX_API_KEY="")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, proc=proc)
    return proc, base


def kill9(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def poll_job(client: httpx.Client, job_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} not finished after {timeout}s")
