"""A webhook receiver for the tests: an HTTP/1.1 server on 127.0.0.1 (asyncio and h11) that
records every request and responds as the test chooses."""

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h11


@dataclass
class ReceivedRequest:
    method: str
    target: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    received_at: float  # time.monotonic()


@dataclass
class Reply:
    status: int = 204
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    delay_s: float = 0.0


# Called with each request and its number (from 0) to choose the reply.
Responder = Callable[[ReceivedRequest, int], Reply]


def always(reply: Reply) -> Responder:
    return lambda request, number: reply


class Receiver:
    def __init__(self, respond: Responder | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond or always(Reply())
        self.tls = tls
        self.requests: list[ReceivedRequest] = []
        self.connections = 0
        self.port = 0  # known once started, and still after the receiver stopped
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> "Receiver":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        # Aborting the connections ends the handlers' reads, so they finish on their own. A
        # graceful TLS close would wait for clients that keep their connections open.
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        connection = h11.Connection(h11.SERVER)
        try:
            while await self._answer_one(connection, reader, writer):
                connection.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, ssl.SSLError):
            pass
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _answer_one(
        self, connection: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        request = await read_request(connection, reader)
        if request is None:
            return False
        self.requests.append(request)
        reply = self.respond(request, len(self.requests) - 1)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        headers = [*reply.headers, ("content-length", str(len(reply.body)))]
        writer.write(connection.send(h11.Response(status_code=reply.status, headers=headers)))
        writer.write(connection.send(h11.Data(data=reply.body)) if reply.body else b"")
        writer.write(connection.send(h11.EndOfMessage()))
        await writer.drain()
        return connection.our_state is h11.DONE and connection.their_state is h11.DONE


async def read_request(
    connection: h11.Connection, reader: asyncio.StreamReader
) -> ReceivedRequest | None:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return ReceivedRequest(
                method=request.method.decode(),
                target=request.target.decode(),
                headers={name.decode(): value.decode() for name, value in request.headers},
                body=bytes(body),
                received_at=time.monotonic(),
            )
        elif isinstance(event, h11.ConnectionClosed):
            return None
