"""An HTTPServer that holds at most a set number of connections and survives running out of fds."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from typing import Any

from tornado import iostream
from tornado.httpserver import HTTPServer

from listener.accept import LogThrottle, add_backoff_accept_handler

log = logging.getLogger("orchestrator.listener")

# Tornado's HTTP/1 parser answers a request it cannot parse (a Content-Length that is no number, two
# of them, a header line without a colon) with exactly these bytes, then closes
# (tornado/http1connection.py). Every other error of this service is JSON: so is this one.
PARSER_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
_JSON_BODY = b'{"error":"the request is not valid HTTP/1.1","status":400}'
JSON_400 = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_JSON_BODY), _JSON_BODY)
)


def answer_parse_errors_in_json(stream: iostream.IOStream) -> None:
    """Make the parser's bare 400 on this connection a JSON one."""
    write = stream.write

    def write_json_400(data: Any, *args: Any, **kwargs: Any) -> Any:
        return write(JSON_400 if data == PARSER_400 else data, *args, **kwargs)

    stream.write = write_json_400  # type: ignore[method-assign]


class CappedHTTPServer(HTTPServer):
    """HTTPServer with a cap on open connections: past `max_connections`, a new connection is
    closed as soon as it is accepted, before any byte of it is read or any buffer allocated.

    Accepting and closing (rather than leaving connections queued) keeps the listen backlog
    moving, so a slot freed by a finished request goes to a new client, not to the oldest
    stalled one; and the cap, kept below the file limit, leaves descriptors for the database
    and the logs. Accepting also backs off when the process does run out of descriptors.
    """

    def initialize(self, *args: Any, max_connections: int | None = None, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        if max_connections is None or max_connections < 1:
            raise ValueError("CappedHTTPServer needs max_connections >= 1")
        self.max_connections = max_connections
        self.open_connections = 0
        self.refused = 0
        self._refusals = LogThrottle(log)

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        # TCPServer.add_sockets with our accept handler; stop() reads the same two dicts.
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = add_backoff_accept_handler(sock, self._accepted)

    def _accepted(self, connection: socket.socket, address: Any) -> None:
        if self.open_connections >= self.max_connections:
            self.refused += 1
            connection.close()
            self._refusals(
                "refused a connection from %s: %d connections open, the cap",
                address[0] if isinstance(address, tuple) else address,
                self.open_connections,
            )
            return
        self._handle_connection(connection, address)

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        # Counted before the connection starts so that a failure to start cannot leave it counted.
        self.open_connections += 1
        answer_parse_errors_in_json(stream)
        try:
            super().handle_stream(stream, address)
        except BaseException:
            self.open_connections -= 1
            raise

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        self.open_connections -= 1
