"""Open streams hold less per connection (listener/long_lived.py), and still write every byte in order."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
from types import SimpleNamespace

import pytest
from tornado.iostream import IOStream

from listener.long_lived import NOTHING_TRUSTED, ShortQueue, slim_connection
from tests.test_stream import server_side_of_a_held_stream


def queue_bytes(stream: IOStream) -> int:
    return sys.getsizeof(stream._write_futures) + sys.getsizeof(stream._write_buffer._buffers)


@pytest.mark.gen_test
async def test_an_open_stream_keeps_small_write_queues_and_still_delivers_everything(
    api, http_port, engine, app
):
    # Tornado's two per-connection write queues are deques of about 760 bytes each, empty: a
    # tenth of what an idle stream costs, by the ten thousand. A Tornado that renamed them would
    # make this fail, rather than let the saving go unnoticed.
    gate, stream, connection = await server_side_of_a_held_stream(api, http_port, engine, app)
    assert queue_bytes(connection.stream) < 200
    assert connection.context.trusted_downstream is NOTHING_TRUSTED
    gate.gate.set()
    assert (await stream.read_all())[-1].type == "final"


@pytest.mark.gen_test(timeout=30)
async def test_a_slimmed_connection_writes_mixed_sizes_to_a_slow_reader_in_order():
    # Small writes are merged into one buffer and large ones queued as views of their own; a
    # reader that does not read makes them all wait in the queues, which are then drained in order.
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    listener.close()
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
    accepted.setblocking(False)
    stream = IOStream(accepted)
    try:
        await write_and_read_back(stream, client)
    finally:
        stream.close()
        client.close()


async def write_and_read_back(stream: IOStream, client: socket.socket) -> None:
    assert slim_connection(stream, None)

    rng = random.Random(7)
    pieces = [rng.randbytes(rng.choice([10, 700, 3000, 40_000])) for _ in range(400)]
    futures = [stream.write(piece) for piece in pieces]
    assert len(stream._write_futures) > 300  # most wait: the reader has not read
    expected = b"".join(pieces)

    client.setblocking(False)
    received = bytearray()
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(20):
        while len(received) < len(expected):
            received += await loop.sock_recv(client, 65536)
        await asyncio.gather(*futures)
    assert bytes(received) == expected
    assert type(stream._write_futures) is ShortQueue and not stream._write_futures


def test_a_connection_whose_queues_are_not_deques_is_left_as_it_is():
    # As a Tornado that changed these private attributes would have them.
    buffer = SimpleNamespace(_buffers=[])
    stream = SimpleNamespace(_write_buffer=buffer, _write_futures=None)
    context = SimpleNamespace(trusted_downstream={"10.0.0.1"})
    assert not slim_connection(stream, context)  # type: ignore[arg-type]
    assert type(buffer._buffers) is list and stream._write_futures is None
    assert context.trusted_downstream == frozenset({"10.0.0.1"})
