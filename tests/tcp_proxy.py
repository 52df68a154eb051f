"""TCP proxies for tests: one that cuts an event stream part-way, as a flaky network would, one that
holds event streams back until they end, as a buffering corporate proxy does, and a round-robin one
in front of several instances, as a load balancer without sticky sessions is."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable
from typing import Any

BUFFER = 65536
CONNECTION_FIELD = re.compile(rb"\r\nConnection:[^\r\n]*", re.IGNORECASE)
EVENT_STREAM = re.compile(rb"\r\nContent-Type:\s*text/event-stream", re.IGNORECASE)


class CuttingProxy:
    """Relays 127.0.0.1:`port` to 127.0.0.1:`upstream_port`, one pair of threads per connection.

    The response to the first `cuts` requests for a session's `/run` are cut after `cut_after` bytes
    of them have been relayed (mid-frame, most likely): both sockets are closed, with no warning to
    either side. Everything else, reconnects included, passes whole. The head of every request is
    kept in `requests`, as the client sent it, so a test can see the Last-Event-ID a reconnect sent;
    `routes` keeps the upstream port each request went to, with its request line.

    With `keep_alive=False` every request goes on with `Connection: close` in place of the client's
    own choice: the server closes the connection once it has answered (and says so), and the client
    opens a new one for its next request, as behind a proxy that keeps no client connection alive.
    """

    def __init__(self, upstream_port: int, cut_after: int, cuts: int = 1, keep_alive: bool = True) -> None:
        self.upstream_port, self.cut_after, self.cuts_left = upstream_port, cut_after, cuts
        self.keep_alive = keep_alive
        self.cuts_made = 0
        self.requests: list[str] = []
        self.routes: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stream_requests(self) -> list[str]:
        return [head for head in self.requests if "/run" in head.split("\r\n", 1)[0]]

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = self._connect()
            if upstream is None:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            state = {"stream": False, "relayed": 0, "port": peer_port(upstream)}
            self._spawn(self._requests, client, upstream, state)
            self._spawn(self._responses, upstream, client, state)

    def _connect(self) -> socket.socket | None:
        try:
            return socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            return None

    def _requests(self, source: socket.socket, sink: socket.socket, state: dict[str, Any]) -> None:
        while data := self._recv(source):
            head = data.decode("latin-1")
            if head.split(" ", 1)[0] in ("GET", "POST", "DELETE", "OPTIONS", "PUT"):
                with self._lock:
                    self.requests.append(head)
                    self.routes.append((state["port"], head.split("\r\n", 1)[0]))
                    # Decided before the request goes on, so before any byte of its answer comes back.
                    state["stream"] = "/run" in head.split("\r\n", 1)[0] and self.cuts_left > 0
                    if state["stream"]:
                        self.cuts_left -= 1
                if not self.keep_alive:
                    data = connection_close(data)
            if not self._send(sink, data):
                break
        with self._lock:
            state["client_gone"] = True  # set before the upstream hears of it, so before it can end
        self._half_close(sink)

    def _responses(self, source: socket.socket, sink: socket.socket, state: dict[str, Any]) -> None:
        while data := self._recv(source):
            if state["stream"]:
                room = self.cut_after - state["relayed"]
                if len(data) >= room:
                    self._send(sink, data[:room])
                    with self._lock:
                        self.cuts_made += 1
                    self._close(source, sink)
                    return
                state["relayed"] += len(data)
            if not self._send(sink, data):
                break
        self._half_close(sink)

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(BUFFER)
        except OSError:
            return b""

    @staticmethod
    def _send(sock: socket.socket, data: bytes) -> bool:
        try:
            sock.sendall(data)
        except OSError:
            return False
        return True

    @staticmethod
    def _half_close(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop accepting, end every connection, and wait for the relay threads to finish."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._threads[0].join(10)  # the accept loop: no connection can be added after this
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        self._close(*sockets)
        for thread in threads:
            thread.join(10)
        for sock in sockets:
            sock.close()

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def peer_port(sock: socket.socket) -> int:
    """The port `sock` is connected to; 0 if it already is not (its relay threads will find out)."""
    try:
        return int(sock.getpeername()[1])
    except OSError:
        return 0


def connection_close(request: bytes) -> bytes:
    """The request (its head at the start, as a client sends one) with `Connection: close` in place
    of any Connection field of its head; the body, if any came with it, untouched."""
    head, blank, body = request.partition(b"\r\n\r\n")
    head = CONNECTION_FIELD.sub(b"", head).replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
    return head + blank + body


class BufferingProxy(CuttingProxy):
    """Holds back all of every event stream (a `text/event-stream` response, its head included) until
    it ends, then relays it whole, as a buffering proxy does; every other response passes as it comes.

    Each request goes on with `Connection: close` (a response ends with its connection). `released`
    keeps, for each stream let go to a client still there, how many requests had come by then, so a
    test can tell which requests (in `requests`) were made while a stream was still held. A stream
    that ends because its client gave up on it (and so closed it) is never let go to anyone.
    """

    def __init__(self, upstream_port: int) -> None:
        self.released: list[int] = []
        super().__init__(upstream_port, cut_after=0, cuts=0, keep_alive=False)

    def _responses(self, source: socket.socket, sink: socket.socket, state: dict[str, Any]) -> None:
        held = b""
        while b"\r\n\r\n" not in held and (data := self._recv(source)):
            held += data
        if EVENT_STREAM.search(held.partition(b"\r\n\r\n")[0]):
            while data := self._recv(source):
                held += data
            with self._lock:
                if not state.get("client_gone"):
                    self.released.append(len(self.requests))
        if held and self._send(sink, held):
            super()._responses(source, sink, state)  # the rest, as it comes
        else:
            self._half_close(sink)


class RoundRobinProxy(CuttingProxy):
    """Each new connection goes to the next of `upstream_ports` that accepts it (a dead instance is
    skipped), as a load balancer without sticky sessions would; `served` keeps which took each.

    A browser sends its requests on the connections it keeps open; with `keep_alive=False` each one
    takes a connection, and so the next instance, of its own. `cut_after` and `cuts` cut streams as
    CuttingProxy does.
    """

    def __init__(
        self, upstream_ports: list[int], keep_alive: bool = True, cut_after: int = 0, cuts: int = 0
    ) -> None:
        self.upstream_ports = list(upstream_ports)
        self.served: list[int] = []
        self._turn = 0
        super().__init__(upstream_ports[0], cut_after=cut_after, cuts=cuts, keep_alive=keep_alive)

    def _connect(self) -> socket.socket | None:
        for _ in self.upstream_ports:
            port = self.upstream_ports[self._turn % len(self.upstream_ports)]
            self._turn += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                continue
            self.served.append(port)
            return upstream
        return None
