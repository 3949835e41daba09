#!/usr/bin/env python3
"""Backends for the test-capture scenarios, all on 127.0.0.1.

18765  a real WebSocket server (python `websockets`) whose behaviour depends on the path:
       /echo          echo every message back, answer pings (the healthy case)
       /quiet         accept the upgrade, then say nothing (idle-timeout scenarios)
       /reset         accept the upgrade, then abort with SO_LINGER 0 (an RST right after 101)
       /reject/NNN    refuse the upgrade with HTTP status NNN
       /login         refuse with 302 Found, Location: /login?next=... (an auth redirect)
18766  a raw TCP server that answers any upgrade with 101 and a wrong Sec-WebSocket-Accept
18767  a raw TCP server that accepts and never answers (nginx's 504)
"""
import asyncio
import http
import socket
import struct
import sys
import threading

from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response


def process_request(connection, request):
    path = request.path.split("?", 1)[0]
    if path.startswith("/reject/"):
        code = int(path.rsplit("/", 1)[1])
        return connection.respond(http.HTTPStatus(code), f"rejected with {code}\n")
    if path == "/login":
        body = b"<html>Redirecting to login</html>\n"
        headers = Headers(
            [
                ("Location", "/login?next=%2Fws"),
                ("Content-Type", "text/html"),
                ("Content-Length", str(len(body))),
                ("Set-Cookie", "redirect_state=SECRETsetcookie-2d8e41; HttpOnly"),
            ]
        )
        return Response(302, "Found", headers, body)
    return None


async def handler(ws):
    path = ws.request.path.split("?", 1)[0]
    if path == "/quiet":
        await ws.wait_closed()
    elif path == "/reset":
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.transport.abort()
    else:
        async for message in ws:
            await ws.send(message)


def raw_bad_accept(port):
    srv = socket.create_server(("127.0.0.1", port))
    while True:
        conn, _ = srv.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
        )
        # The client fails the connection; wait for it to go away.
        while conn.recv(4096):
            pass
        conn.close()


def raw_silent(port):
    srv = socket.create_server(("127.0.0.1", port))
    held = []
    while True:
        conn, _ = srv.accept()
        held.append(conn)  # never answer, never close


async def main():
    for target, port in ((raw_bad_accept, 18766), (raw_silent, 18767)):
        threading.Thread(target=target, args=(port,), daemon=True).start()
    async with serve(handler, "127.0.0.1", 18765, process_request=process_request,
                     ping_interval=None, max_size=None) as server:
        print("ready", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
