"""HTTP plumbing: the threaded server and the request handler, which only move bytes.

Each request goes to ``ZoomSimulator._route`` (server.py) and its ``_Resp`` goes out in one write;
a ``reset`` answer drops the connection with a TCP RST instead. A bug in the simulator answers 500.
"""

from __future__ import annotations

import socket
import struct
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from zoom_pipeline.simulator.responses import _json, _Resp


class _Routes(Protocol):
    """What the handler needs of the simulator (server.py's ZoomSimulator): it routes, and counts connections."""

    def _route(self, method: str, target: str, headers: Any, body: bytes) -> _Resp: ...

    def _track(self, conn: socket.socket, opened: bool) -> None: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # concurrent clients must not be refused
    sim: _Routes

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (or stop() dropping them) is normal here; keep stderr quiet.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ZoomSimulator/1.0"
    sys_version = ""
    # Headers and body go out in one write, and TCP_NODELAY avoids the Nagle/delayed-ACK 40 ms stall.
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections eventually free their thread
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.sim._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sim._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._write(_json(400, {"error": "bad Content-Length"}))
            return
        body = self.rfile.read(length) if length else b""
        try:
            resp = self.server.sim._route(self.command, self.path, self.headers, body)
        except Exception as exc:  # a simulator bug must surface as a 500, not a hung client
            resp = _json(500, {"code": 500, "message": f"simulator error: {exc!r}"})
        if resp.reset:
            self._reset()
        else:
            self._write(resp)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _write(self, resp: _Resp) -> None:
        lines = [
            f"HTTP/1.1 {resp.status} {HTTPStatus(resp.status).phrase}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {resp.ctype}",
            f"Content-Length: {len(resp.body)}",
        ]
        lines.extend(f"{k}: {v}" for k, v in resp.headers)
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body)

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST; rfile is closed first because its reference would
        # otherwise keep the descriptor open.
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass
