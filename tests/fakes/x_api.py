"""A local X API v2 on 127.0.0.1 speaking the API's documented shapes: tweepy's real requests go
over the socket to it, so nothing inside Mesh is replaced. Responses are fixture names
(tests/fixtures/twitter/<name>.json), dict bodies or (status, headers, body)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "twitter"


def fixture(name: str) -> dict:
    with (FIXTURES / f"{name}.json").open(encoding="utf-8") as fh:
        return json.load(fh)


class FakeX:
    """A local X API: rules (path, params that must match) → responses, most specific rule
    first; a list of responses is served in order, its last one repeating. Every request is
    recorded (path, params, headers)."""

    def __init__(self):
        self.rules: list[tuple[str, dict, list]] = []
        self.requests: list[tuple[str, dict, dict]] = []
        self.delay = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                params = dict(parse_qsl(url.query))
                fake.requests.append((url.path, params, dict(self.headers)))
                if fake.delay:
                    time.sleep(fake.delay)
                status, headers, body = fake.answer(url.path, params)
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that gave up (the timeout test) is not the server's problem

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def on(self, path: str, *responses, **params) -> FakeX:
        """Answer GET ``path`` (when the query has ``params``) with each response in turn:
        a fixture name, a dict body, or (status, headers, body)."""
        self.rules.insert(0, (path, params, [r if isinstance(r, tuple) else (200, {}, r) for r in responses]))
        self.rules.sort(key=lambda rule: -len(rule[1]))
        return self

    def answer(self, path: str, params: dict):
        for rule_path, match, responses in self.rules:
            if rule_path == path and all(params.get(k) == v for k, v in match.items()):
                status, headers, body = responses.pop(0) if len(responses) > 1 else responses[0]
                return status, headers, fixture(body) if isinstance(body, str) and not body.startswith("<") else body
        return 404, {}, {"title": "Not Found Error", "detail": f"no fake route for {path} {params}", "status": 404}

    def calls(self, path: str) -> list[dict]:
        return [params for p, params, _h in self.requests if p == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
