"""A minimal webhook receiver for the benchmark, run as its own process.

``python bench/webhooks_receiver.py RESULTS_FILE`` listens on 127.0.0.1 (a free port, printed on
the first line of stdout), responds 204 to every POST over keep-alive connections, and on
SIGTERM writes one JSON line per request: the arrival time (ns since the epoch) and the body.
It parses only what it needs (Content-Length), so it costs the machine little CPU.
"""

import asyncio
import json
import signal
import sys
import time

RESPONSE = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


class ReceiverProtocol(asyncio.Protocol):
    def __init__(self, arrivals: list[tuple[int, bytes]]) -> None:
        self.arrivals = arrivals
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self._take_request():
            pass

    def _take_request(self) -> bool:
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        length = content_length(self.buffer[:head_end])
        body_start = head_end + 4
        if len(self.buffer) < body_start + length:
            return False
        body = self.buffer[body_start : body_start + length]
        self.buffer = self.buffer[body_start + length :]
        self.arrivals.append((time.time_ns(), body))
        assert self.transport is not None
        self.transport.write(RESPONSE)
        return True


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def serve() -> list[tuple[int, bytes]]:
    """Respond to requests until SIGTERM, then return each request's arrival time and body."""
    arrivals: list[tuple[int, bytes]] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ReceiverProtocol(arrivals), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()
    server.close()
    return arrivals


def main() -> None:
    arrivals = asyncio.run(serve())
    with open(sys.argv[1], "w") as results:
        for arrived_ns, body in arrivals:
            results.write(json.dumps({"arrivedNs": arrived_ns, "body": body.decode()}) + "\n")


if __name__ == "__main__":
    main()
