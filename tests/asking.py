"""The video and questions of the ask tests: an 80 s, 128 x 128 synthetic video whose truth
answers each question (one purple star in two separate scenes, a red circle followed by an
orange triangle), and helpers: an OpenAI-compatible endpoint that misbehaves on purpose."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

#: Scenes: 0-10 green circle, 10-14 purple star, 14-20 blue square + yellow circle,
#: 20-23 red circle, 23-27 orange triangle, 27-67 empty, 67-71 purple star, 71-80 green square.
QA_SPEC = {"fps": 2, "size": [128, 128], "seed": 1000000001, "scenes": [
    {"duration": 10, "background": "gray", "objects": [{"shape": "circle", "color": "green"}]},
    {"duration": 4, "background": "black", "objects": [{"shape": "star", "color": "purple"}]},
    {"duration": 6, "background": "white", "objects": [{"shape": "square", "color": "blue"},
                                                      {"shape": "circle", "color": "yellow"}]},
    {"duration": 3, "background": "black", "objects": [{"shape": "circle", "color": "red"}]},
    {"duration": 4, "background": "gray", "objects": [{"shape": "triangle", "color": "orange"}]},
    {"duration": 40, "background": "white", "objects": []},
    {"duration": 4, "background": "black", "objects": [{"shape": "star", "color": "purple"}]},
    {"duration": 9, "background": "gray", "objects": [{"shape": "square", "color": "green"}]},
]}
COLOUR_Q, AFTER_Q, COUNT_Q = ("What colour is the star?", "What shape appears after the red "
                              "circle?", "How many times does the purple star appear?")
STAR_SPANS = ((10.0, 14.0), (67.0, 71.0))


class BadEndpoint:
    """An HTTP server on loopback that answers ``/v1/chat/completions`` as ``mode`` says:
    ``slow`` (sleeps past any test timeout), ``500``, ``text`` (not JSON), ``nochoices``
    (JSON without choices), ``ok`` (a valid completion). It records each request's
    ``Authorization`` header."""

    def __init__(self) -> None:
        outer = self
        self.mode = "ok"
        self.requests = 0
        self.auth: list[str | None] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests += 1
                outer.auth.append(self.headers.get("authorization"))
                status, ctype, body = 200, "application/json", b""
                if outer.mode == "slow":
                    time.sleep(3)
                    body = b"{}"
                elif outer.mode == "500":
                    status, body = 500, json.dumps({"error": {"message": "GPU on fire"}}).encode()
                elif outer.mode == "text":
                    ctype, body = "text/html", b"<html>502 Bad Gateway</html>"
                elif outer.mode == "nochoices":
                    body = json.dumps({"id": "x", "object": "chat.completion"}).encode()
                else:
                    body = json.dumps({
                        "id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {
                            "role": "assistant", "content": "blue"}}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 1,
                                  "total_tokens": 8}}).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", ctype)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (the timeout test)
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
