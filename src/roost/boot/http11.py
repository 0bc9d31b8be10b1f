"""A small HTTP/1.1 server on non-blocking sockets with zero-copy file bodies.

Why not uvicorn: boot files are large and many nodes fetch them at once, and uvicorn cannot
send a file without copying it through Python (no ``sendfile``; uvloop implements neither
``loop.sendfile`` nor ``loop.sock_sendfile``). Here h11 (the sans-IO HTTP/1.1 state machine)
parses requests and frames responses, and a file body goes from the page cache to the socket
with ``os.sendfile`` (Linux ``sendfile(2)``), waiting for writability between calls, so a
transfer costs a few system calls per socket buffer instead of a copy per chunk. Readiness is
waited for with ``add_reader``/``add_writer`` on the raw socket, which works the same on the
asyncio and the uvloop event loop. Keep-alive, ``Expect: 100-continue``, an idle timeout, a
deadline for each request head (counted from the connection's accept or the next request's
first byte, not restarted by every byte, so a trickling client cannot hold a connection), a
body limit and connection caps in all and per client address (``503`` past them) are handled
here; routing is the handler's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import select
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from roost import privileges

log = logging.getLogger(__name__)

_RECV = 65536
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n"
    b"retry-after: 1\r\nconnection: close\r\n\r\n"
)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


@dataclass
class Request:
    method: str
    path: str
    """Percent-decoded path without the query."""
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-case names; a repeated header keeps its last value."""
    body: bytes
    client: str
    """IP address of the peer."""
    local: str = ""
    """``host:port`` the request arrived on."""
    note: dict[str, Any] = field(default_factory=dict)
    """What the handler wants the observer to know (e.g. which node asked)."""


@dataclass
class FileBody:
    """``length`` bytes of an open file from ``offset``; the server closes ``fd``."""

    fd: int
    offset: int
    length: int
    sent: int = 0

    def __len__(self) -> int:
        return self.length


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: FileBody | None = None

    def close(self) -> None:
        if self.file is not None:
            os.close(self.file.fd)
            self.file = None


Handler = Callable[[Request], Awaitable[Response]]
Observer = Callable[[Request, Response, int, float, bool], None]
"""Called after every response: request, response, body bytes sent, seconds taken, and
whether the whole response went out."""


async def _wait(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, write: bool, t: float
) -> None:
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    fd = sock.fileno()
    if write:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await asyncio.wait_for(fut, t)
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def recv(loop: asyncio.AbstractEventLoop, sock: socket.socket, stall: float) -> bytes:
    while True:
        try:
            return sock.recv(_RECV)
        except BlockingIOError:
            await _wait(loop, sock, False, stall)


async def sendall(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes, stall: float
) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            await _wait(loop, sock, True, stall)


async def sendfile(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, body: FileBody, stall: float
) -> int:
    """Send the file slice with sendfile(2), counting in ``body.sent``; a reader that takes
    nothing for ``stall`` seconds ends the transfer with :class:`TimeoutError`.

    This is the hot loop of a large transfer: it wakes once per drained socket buffer. The
    writer callback stays registered for the whole transfer and the stall timer is a plain
    ``call_later``, so a wake-up costs one future instead of ``wait_for``'s machinery and two
    epoll registrations."""
    out = sock.fileno()
    waiter: asyncio.Future[None] | None = None

    def writable() -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def stalled() -> None:
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError("reader stalled"))

    registered = False
    try:
        while body.sent < body.length:
            try:
                n = os.sendfile(out, body.fd, body.offset + body.sent, body.length - body.sent)
            except BlockingIOError:
                if not registered:
                    loop.add_writer(out, writable)
                    registered = True
                waiter = loop.create_future()
                timer = loop.call_later(stall, stalled)
                try:
                    await waiter
                finally:
                    timer.cancel()
                continue
            if n == 0:  # the file shrank under us: the promised length cannot be kept
                raise ConnectionAbortedError("file ended early")
            body.sent += n
    finally:
        if registered:
            loop.remove_writer(out)
    return body.sent


def pump(sock: socket.socket, body: FileBody, stall: float) -> int:
    """:func:`sendfile` for a worker thread: the same loop, waiting with poll(2) instead of
    the event loop. ``os.sendfile`` and ``poll`` release the GIL, so each transfer is woken
    by the kernel directly and many run at once on every core."""
    out = sock.fileno()
    poller = select.poll()
    poller.register(out, select.POLLOUT)
    while body.sent < body.length:
        try:
            n = os.sendfile(out, body.fd, body.offset + body.sent, body.length - body.sent)
        except BlockingIOError:
            if not poller.poll(stall * 1000):
                raise TimeoutError("reader stalled") from None
            continue
        if n == 0:
            raise ConnectionAbortedError("file ended early")
        body.sent += n
    return body.sent


class HTTPServer:
    """Serves ``handler`` on one listening socket; constructed without I/O."""

    def __init__(
        self,
        handler: Handler,
        observe: Observer | None = None,
        *,
        max_connections: int = 1024,
        idle_timeout: float = 30.0,
        header_timeout: float = 10.0,
        max_connections_per_client: int = 16,
        max_body: int = 1 << 20,
        pump_threads: int = 0,
    ) -> None:
        self.handler = handler
        self.observe = observe
        self.max_connections = max_connections
        self.max_per_client = max_connections_per_client
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.max_body = max_body
        self._pumps = (
            ThreadPoolExecutor(pump_threads, thread_name_prefix="boot-http-pump")
            if pump_threads
            else None
        )
        self.address: tuple[str, int] | None = None
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._per_client: dict[str, int] = {}
        self.refused = 0

    async def start(self, host: str, port: int) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        privileges.bind(sock, (host, port), "boot.http_port")
        sock.listen(1024)
        sock.setblocking(False)
        self._listener = sock
        self.address = sock.getsockname()[:2]
        self._accepting = asyncio.create_task(self._accept(sock), name="boot-http-accept")
        return self.address

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._pumps is not None:
            self._pumps.shutdown(wait=True)

    @property
    def active(self) -> int:
        return len(self._connections)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await _wait(loop, listener, False, 3600.0 * 24)
            while True:  # drain the backlog: a boot storm connects in bursts
                try:
                    sock, addr = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:  # EMFILE and friends: back off instead of spinning
                    log.warning("boot http accept failed: %s", exc)
                    await asyncio.sleep(0.1)
                    break
                sock.setblocking(False)
                ip = str(addr[0]).removeprefix("::ffff:")
                held = self._per_client.get(ip, 0)
                if len(self._connections) >= self.max_connections or held >= self.max_per_client:
                    self.refused += 1
                    with contextlib.suppress(OSError):
                        sock.send(_BUSY)
                    sock.close()
                    continue
                self._per_client[ip] = held + 1
                task = asyncio.create_task(self._serve(loop, sock, ip))
                self._connections.add(task)
                task.add_done_callback(functools.partial(self._closed, ip))

    def _closed(self, ip: str, task: asyncio.Task[None]) -> None:
        self._connections.discard(task)
        left = self._per_client[ip] - 1
        if left:
            self._per_client[ip] = left
        else:
            del self._per_client[ip]

    async def _serve(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, ip: str) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.SERVER)
        first = True
        try:
            while True:
                request = await self._read_request(loop, sock, conn, ip, first)
                first = False
                if request is None:
                    return
                await self._respond(loop, sock, conn, request)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, ValueError) as exc:
            with contextlib.suppress(Exception):
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = getattr(exc, "error_status_hint", 400)
                    await self._send_simple(loop, sock, conn, status, str(exc))
                    await self._linger(loop, sock)
        except (TimeoutError, ConnectionError, OSError):
            pass  # idle, stalled or gone: nothing to say to it
        finally:
            sock.close()

    async def _next(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, conn: h11.Connection
    ) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return cast("h11.Event | type[h11.PAUSED]", event)
            if conn.they_are_waiting_for_100_continue:
                await sendall(
                    loop,
                    sock,
                    conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"",
                    self.idle_timeout,
                )
            conn.receive_data(await recv(loop, sock, self.idle_timeout))

    async def _head(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        conn: h11.Connection,
        first: bool,
    ) -> h11.Event | type[h11.PAUSED]:
        """The next request head, complete within ``header_timeout`` of the accept (first
        request) or of the first byte after the last response (keep-alive, which may idle)."""
        deadline = loop.time() + self.header_timeout if first else None
        received = False
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return cast("h11.Event | type[h11.PAUSED]", event)
            wait = self.idle_timeout if deadline is None else deadline - loop.time()
            if not received:  # a silent connection is idle, whichever comes first
                wait = min(wait, self.idle_timeout)
            if wait <= 0:
                raise TimeoutError("request head not complete in time")
            data = await recv(loop, sock, wait)
            received = True
            if deadline is None:
                deadline = loop.time() + self.header_timeout
            conn.receive_data(data)

    async def _read_request(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        conn: h11.Connection,
        ip: str,
        first: bool,
    ) -> Request | None:
        event = await self._head(loop, sock, conn, first)
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed or PAUSED after a close
        body = bytearray()
        while True:
            part = await self._next(loop, sock, conn)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > self.max_body:
                    raise h11.RemoteProtocolError("request body too large", 413)
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return None
        target = urlsplit(event.target.decode("ascii", "replace"))
        return Request(
            method=event.method.decode("ascii", "replace"),
            path=unquote(target.path, errors="strict"),
            query=dict(parse_qsl(target.query)),
            headers={k.decode().lower(): v.decode("latin-1") for k, v in event.headers},
            body=bytes(body),
            client=ip,
            local=self._local(sock),
        )

    async def _send_file(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, body: FileBody
    ) -> None:
        if self._pumps is None:
            await sendfile(loop, sock, body, self.idle_timeout)
            return
        done = loop.run_in_executor(self._pumps, pump, sock, body, self.idle_timeout)
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            # the thread cannot be cancelled; breaking the connection ends its sendfile
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            await asyncio.wait([done])
            raise

    @staticmethod
    def _local(sock: socket.socket) -> str:
        host, port = sock.getsockname()[:2]
        if host.startswith("::ffff:"):
            host = host[7:]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def _respond(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        conn: h11.Connection,
        request: Request,
    ) -> None:
        started = time.perf_counter()
        try:
            response = await self.handler(request)
        except Exception:
            log.exception("boot http handler failed for %s %s", request.method, request.path)
            response = Response(500, [("content-type", "text/plain")], b"internal error\n")
        sent = 0
        complete = False
        file = response.file
        try:
            length = len(response.file) if response.file else len(response.body)
            headers = list(response.headers)
            if response.status not in (204, 304):  # RFC 9110 §8.6: no length for these
                headers.append(("content-length", str(length)))
            head = conn.send(
                h11.Response(
                    status_code=response.status, headers=headers, reason=_reason(response.status)
                )
            )
            assert head is not None
            if request.method == "HEAD":
                await sendall(
                    loop, sock, head + (conn.send(h11.EndOfMessage()) or b""), self.idle_timeout
                )
            elif response.file is not None:
                # h11 counts the body with len() and hands the object back as is (for sendfile)
                conn.send_with_data_passthrough(h11.Data(data=cast(bytes, response.file)))
                await sendall(loop, sock, head, self.idle_timeout)
                await self._send_file(loop, sock, response.file)
                conn.send(h11.EndOfMessage())
            else:
                data = conn.send(h11.Data(data=response.body)) or b""
                await sendall(
                    loop,
                    sock,
                    head + data + (conn.send(h11.EndOfMessage()) or b""),
                    self.idle_timeout,
                )
                sent = len(response.body)
            complete = True
        finally:
            if file is not None:
                sent = file.sent
            response.close()
            if self.observe is not None:
                self.observe(request, response, sent, time.perf_counter() - started, complete)

    @staticmethod
    async def _linger(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        """Half-close and read what the peer still sends, briefly: closing with unread input
        makes the kernel send RST, which can destroy the error response before it is read."""
        sock.shutdown(socket.SHUT_WR)
        deadline = loop.time() + 1.0
        drained = 0
        while drained < 1 << 20 and (left := deadline - loop.time()) > 0:
            data = await recv(loop, sock, left)
            if not data:
                return
            drained += len(data)

    async def _send_simple(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        conn: h11.Connection,
        status: int,
        text: str,
    ) -> None:
        body = (text + "\n").encode()
        headers = [
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        out = conn.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
        out = out or b""
        out += conn.send(h11.Data(data=body)) or b""
        await sendall(loop, sock, out, self.idle_timeout)
