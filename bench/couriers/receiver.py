"""A tiny website stand-in for the demo and the fault test: receives the outbox's signed events on loopback,
verifies the O2O-Signature, deduplicates by event id ("applies" each once), counts raw deliveries, and can print.

    .venv/bin/python bench/couriers/receiver.py --port 8790 --secret demo-site-secret
then set the website channel's webhook URL to http://127.0.0.1:8790/o2o-events (and its secret) in the admin.
"""

import argparse
import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from o2o import signing  # noqa: E402


class Receiver:
    def __init__(self, secret: str, *, port: int = 0, delay_s: float = 0.0, echo: bool = False) -> None:
        self.secret, self.delay_s, self.echo = secret, delay_s, echo
        self.received: list[dict] = []  # first delivery of each event, in arrival order
        self.applied: Counter[str] = Counter()  # how many times each id was applied (must stay 1)
        self.raw: Counter[str] = Counter()  # how many times each id arrived (redeliveries make it > 1)
        self.deliveries = 0
        self.bad_signatures = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)  # a slow website: more chances to be killed mid-delivery
                with receiver._lock:
                    receiver.deliveries += 1
                    try:
                        signing.verify(self.headers.get(signing.HEADER), body, [receiver.secret])
                    except signing.SignatureError:
                        receiver.bad_signatures += 1
                        self.send_response(401)
                        self.end_headers()
                        return
                    event = json.loads(body)
                    receiver.raw[event["id"]] += 1
                    if event["id"] not in receiver.applied:
                        receiver.applied[event["id"]] += 1
                        receiver.received.append(event)
                        if receiver.echo:
                            data = json.dumps(event["data"], ensure_ascii=False)
                            print(f"{event['created_at'][11:19]}  {event['topic']:<32} {event['aggregate']:<18} {data}",
                                  flush=True)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/o2o-events"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--secret", default="demo-site-secret")
    args = parser.parse_args()
    with Receiver(args.secret, port=args.port, echo=True) as site:
        print(f"listening on {site.url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(f"\n{len(site.received)} events, {site.deliveries} deliveries, {site.bad_signatures} bad signatures")


if __name__ == "__main__":
    main()
