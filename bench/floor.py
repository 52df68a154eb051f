"""The floor under `python -m bench compare`'s create figures: Tornado alone, answering a create.

A bare tornado.web.Application on the event loop the service uses (uvloop when installed), whose one
handler answers `POST /api/sessions` with a fixed 201 and a JSON id: no body parsing, no store, no
logging, no headers of its own. What it costs per request is what any Tornado service pays before
it does anything, so no work trimmed from this service can take a create below it.

    python -m bench.floor --port 0

prints `listening on http://127.0.0.1:PORT` to stderr once the port is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence

import tornado.httpserver
import tornado.netutil
import tornado.web

from listener.event_loop import run as run_on_loop


class CreateHandler(tornado.web.RequestHandler):
    def post(self) -> None:
        self.set_status(201)
        self.set_header("Content-Type", "application/json")
        self.finish(b'{"id":"%s"}' % str(uuid.uuid4()).encode())


async def serve(host: str, port: int) -> None:
    app = tornado.web.Application([(r"/api/sessions", CreateHandler)], log_function=lambda _: None)
    [server_socket] = tornado.netutil.bind_sockets(port, host)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([server_socket])
    print(f"floor: listening on http://{host}:{server_socket.getsockname()[1]}", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    args = parser.parse_args(argv)
    run_on_loop("auto", serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
