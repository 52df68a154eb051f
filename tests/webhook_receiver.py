"""A webhook receiver for tests, run as its own process: it verifies each message with the Standard
Webhooks library and records what it got, one JSON line per request.

    python -m tests.webhook_receiver --port 0 --secret whsec_... --record FILE [--answer 200]

It prints `listening on http://127.0.0.1:PORT` once it accepts requests. The status it answers is
read from FILE.answer (if that file exists) on every request, so a test can change it while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import tornado.web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets


class Receiver(tornado.web.RequestHandler):
    def initialize(self, verifier: Webhook, record: Path, answer: int) -> None:
        self.verifier, self.record, self.answer = verifier, record, answer

    def post(self) -> None:
        headers = {name.lower(): value for name, value in self.request.headers.items()}
        try:
            self.verifier.verify(self.request.body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        override = self.record.with_suffix(".answer")
        status = int(override.read_text()) if override.exists() else self.answer
        line = {
            "id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "verified": verified,
            "status": status,
            "body": self.request.body.decode(),
        }
        with self.record.open("a") as out:
            out.write(json.dumps(line) + "\n")
        self.set_status(status)
        self.finish()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--answer", type=int, default=200)
    args = parser.parse_args()
    options = {"verifier": Webhook(args.secret), "record": args.record, "answer": args.answer}
    app = tornado.web.Application([(r"/.*", Receiver, options)])
    sockets = bind_sockets(args.port, "127.0.0.1")
    HTTPServer(app).add_sockets(sockets)
    print(f"listening on http://127.0.0.1:{sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
