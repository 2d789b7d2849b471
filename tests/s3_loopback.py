"""An S3 stand-in on loopback for tests and benchmarks: moto's S3, served one request at a time,
counting the requests it answers.

    python tests/s3_loopback.py --port 5599          # http://127.0.0.1:5599
    curl http://127.0.0.1:5599/_requests             # {"GET": 12, "PUT": 40, ...}
    curl -X DELETE http://127.0.0.1:5599/_requests   # reset the counters

Why serial: moto checks ``If-None-Match: *`` (S3's put-if-not-exists, which Lance's commits and
framedex's leases rely on) and then stores the object in two steps; ``moto_server`` answers
requests on threads, so two racing conditional puts can both succeed there, which real S3
never allows. One request at a time makes each conditional put atomic, as on S3.

``start(tmp)`` runs it in a subprocess and returns its endpoint; ``storage_options(endpoint)``
is what framedex's ``storage_options`` (or the AWS_* environment) needs for it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

COUNTS_PATH = "/_requests"


def storage_options(endpoint: str) -> dict[str, str]:
    """Lance/object_store settings for the stand-in at ``endpoint``."""
    return {"aws_endpoint": endpoint, "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing", "aws_region": "us-east-1",
            "allow_http": "true"}


def environment(endpoint: str) -> dict[str, str]:
    """The same settings as AWS_* environment variables (what a CLI user exports)."""
    return {"AWS_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true"}


class _Counting:
    """WSGI middleware: counts requests by method; ``/_requests`` reads or resets them."""

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == COUNTS_PATH:
            with self.lock:
                if environ["REQUEST_METHOD"] == "DELETE":
                    self.counts.clear()
                body = json.dumps(dict(self.counts)).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        with self.lock:
            self.counts[environ["REQUEST_METHOD"]] += 1
        return self.app(environ, start_response)


def serve(host: str, port: int) -> None:
    """Serve moto's S3 on ``host:port``, one request at a time (blocks)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, _Counting(app), threaded=False, use_reloader=False)


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start the stand-in in a subprocess; returns it and its endpoint URL.

    Raises:
        RuntimeError: it did not answer within ``timeout`` seconds.
    """
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(endpoint + COUNTS_PATH, timeout=1).close()
            return proc, endpoint
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the S3 stand-in (moto) did not start") from None
            time.sleep(0.1)


def make_bucket(endpoint: str, bucket: str) -> None:
    """Create ``bucket`` (a no-op when it exists)."""
    req = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
    urllib.request.urlopen(req, timeout=10).close()


def request_counts(endpoint: str, reset: bool = False) -> dict[str, int]:
    """Requests answered so far, by HTTP method (``reset``: and start counting again)."""
    req = urllib.request.Request(endpoint + COUNTS_PATH, method="DELETE" if reset else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return {k: int(v) for k, v in json.loads(r.read()).items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.host, args.port)
