"""A tiny website stand-in: receives signed events on loopback, verifies them, deduplicates by event id, counts."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from o2o import signing


class Receiver:
    def __init__(self, secret: str, *, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.received: list[dict] = []  # first delivery of each event, in arrival order
        self.deliveries = 0
        self.bad_signatures = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.deliveries += 1
                    if receiver.fail_first > 0:
                        receiver.fail_first -= 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    try:
                        signing.verify(self.headers.get(signing.HEADER), body, [receiver.secret])
                    except signing.SignatureError:
                        receiver.bad_signatures += 1
                        self.send_response(401)
                        self.end_headers()
                        return
                    event = json.loads(body)
                    if event["id"] not in receiver._seen:
                        receiver._seen.add(event["id"])
                        receiver.received.append(event)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/o2o-events"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
