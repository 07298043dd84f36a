"""A small webhook receiver that verifies jobcord's signatures (stdlib only).

    JOBCORD_WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py 9000

Then submit with ``webhook_endpoint="http://127.0.0.1:9000/hook"`` (and, since that is a
loopback address, ``JOBCORD_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8`` for the scheduler and API).
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from jobcord import WebhookVerificationError, verify_webhook


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            event = verify_webhook(dict(self.headers), body, os.environ["JOBCORD_WEBHOOK_SECRET"])
        except WebhookVerificationError as exc:
            self.send_response(400)
            self.end_headers()
            print(f"refused: {exc}", flush=True)
            return
        data = event["data"]
        print(
            f"{event['type']}: {data['request_id']} {data['status']} {data.get('output')}",
            flush=True,
        )
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    HTTPServer(
        ("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 9000), Receiver
    ).serve_forever()
