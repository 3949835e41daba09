#!/usr/bin/env python3
"""Drives one recorded scenario as a real client: `client.py SCENARIO CERTFILE`.

Every request carries the planted secrets listed in testdata/README.md so that the scrubber
has something real to remove.
"""
import asyncio
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import time

# Browsers never follow redirects on a WebSocket handshake; neither does this client.
# (websockets counts attempts here: 1 means one connection, no redirect followed.)
os.environ.setdefault("WEBSOCKETS_MAX_REDIRECTS", "1")

from dnslib import DNSRecord
from websockets.asyncio.client import connect

COOKIE = "session=SECRETcookie-7f3a9c"
BEARER = "Bearer SECRETtoken-4b21e8"
QUERY = "token=SECRETquery-91d0c2"
MESSAGE = "SECRETmessage-hello-5e7a"
HEADERS = {"Cookie": COOKIE, "Authorization": BEARER}


def url(port, path, scheme="ws", host="127.0.0.1"):
    return f"{scheme}://{host}:{port}{path}?{QUERY}"


async def chat(uri, *, messages=3, ping=True, compression=None, code=1000, **kw):
    async with connect(uri, additional_headers=HEADERS, ping_interval=None,
                       compression=compression, **kw) as ws:
        for i in range(messages):
            await ws.send(f"{MESSAGE} #{i}")
            await ws.recv()
            if ping and i == 0:
                pong = await ws.ping(b"p1")
                await pong
        await ws.close(code, "bye SECRETclose-reason-0c4d")


async def expect_failure(uri, **kw):
    try:
        async with connect(uri, additional_headers=HEADERS, ping_interval=None,
                           open_timeout=8, compression=None, **kw) as ws:
            await ws.recv()
    except Exception as e:  # the failure is the point of the scenario
        print(f"  client saw: {type(e).__name__}: {e}", file=sys.stderr)


def dns(name, qtype="A"):
    q = DNSRecord.question(name, qtype)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(q.pack(), ("127.0.0.1", 53))
    try:
        return DNSRecord.parse(s.recv(4096))
    except socket.timeout:
        return None
    finally:
        s.close()


def dns_tcp(name, split=False):
    """A lookup over TCP (RFC 7766), as resolvers retry a truncated answer. With `split`, the
    two length bytes go in a segment of their own, as some resolvers write them."""
    q = DNSRecord.question(name).pack()
    with socket.create_connection(("127.0.0.1", 53), timeout=2) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        length = struct.pack("!H", len(q))
        if split:
            s.sendall(length)
            time.sleep(0.05)
            s.sendall(q)
        else:
            s.sendall(length + q)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return DNSRecord.parse(data[2:])


def plain_get(port, path="/"):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: www.unrelated.test\r\nConnection: close\r\n\r\n".encode())
        while s.recv(4096):
            pass


def tls_h2_get(port, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="ws.test") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: ws.test\r\nConnection: close\r\n\r\n")
            while s.recv(4096):
                pass


def split_request(port):
    """An upgrade request written in three pieces, so it spans three TCP segments."""
    req = (
        f"GET /echo?{QUERY} HTTP/1.1\r\nHost: ws.test:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Cookie: {COOKIE}\r\nAuthorization: {BEARER}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for a, b in ((0, 20), (20, 90), (90, len(req))):
            s.sendall(req[a:b])
            time.sleep(0.05)
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += s.recv(4096)
        # one masked text frame, then a close frame 1000
        payload = MESSAGE.encode()
        mask = b"\x11\x22\x33\x44"
        masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        s.recv(4096)
        close = b"\x03\xe8"
        s.sendall(bytes([0x88, 0x82]) + mask + bytes(c ^ mask[i] for i, c in enumerate(close)))
        s.recv(4096)


async def run(scenario, cafile):
    wss_ctx = ssl.create_default_context(cafile=cafile)
    if scenario == "direct-ok":
        # permessage-deflate, as browsers negotiate it: frames carry RSV1.
        await chat(url(18765, "/echo"), compression="deflate")
    elif scenario == "proxy-ok":
        await chat(url(18080, "/echo"))
    elif scenario == "proxy-stripped":
        await expect_failure(url(18081, "/echo"))
    elif scenario == "proxy-stripped-rewrite":
        await expect_failure(url(18081, "/app/echo"))
    elif scenario == "auth-subrequest":
        await expect_failure(url(18086, "/echo"))
    elif scenario.startswith("reject-"):
        code = scenario.split("-")[1]
        port = 18080 if code in ("403", "404") else 18765
        await expect_failure(url(port, f"/reject/{code}"))
    elif scenario == "auth-redirect":
        await expect_failure(url(18080, "/login"))
    elif scenario == "proxy-502":
        await expect_failure(url(18082, "/echo"))
    elif scenario == "proxy-504":
        await expect_failure(url(18083, "/echo"))
    elif scenario == "wss-ok":
        await chat(url(18443, "/echo", "wss", "ws.test"), ssl=wss_ctx,
                   host="127.0.0.1", port=18443, server_hostname="ws.test")
    elif scenario == "wss-keylog":
        # generate.sh sets SSLKEYLOGFILE, so Python's ssl logs both sessions' secrets; the
        # capture gets them as a Decryption Secrets Block. The second session offers h2 and
        # is not a WebSocket: trim must drop it and its keys.
        await chat(url(18443, "/echo", "wss", "ws.test"), ssl=ssl.create_default_context(cafile=cafile),
                   host="127.0.0.1", port=18443, server_hostname="ws.test")
        tls_h2_get(18443, cafile)
    elif scenario in ("wss-keys-13", "wss-keys-client-only"):
        # TLS 1.3, one cipher suite per terminator port (nginx.conf), SSLKEYLOGFILE set by
        # generate.sh: a chat closed 1001 (AES-256-GCM), a 403 (AES-128-GCM), a login
        # redirect (ChaCha20-Poly1305).
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.set_alpn_protocols(["http/1.1"])
        tls = dict(ssl=ctx, host="127.0.0.1", server_hostname="ws.test")
        await chat(url(18446, "/echo", "wss", "ws.test"), port=18446, code=1001, **tls)
        if scenario == "wss-keys-13":
            await expect_failure(url(18444, "/reject/403", "wss", "ws.test"), port=18444, **tls)
            await expect_failure(url(18445, "/login", "wss", "ws.test"), port=18445, **tls)
    elif scenario == "wss-keys-12":
        # TLS 1.2 with each AEAD suite: a chat (AES-128-GCM), a reset right after the 101
        # (AES-256-GCM), a chat closed 1001 (ChaCha20-Poly1305).
        def ctx12(cipher):
            c = ssl.create_default_context(cafile=cafile)
            c.maximum_version = ssl.TLSVersion.TLSv1_2
            c.set_ciphers(cipher)
            return dict(ssl=c, host="127.0.0.1", port=18443, server_hostname="ws.test")
        await chat(url(18443, "/echo", "wss", "ws.test"), **ctx12("ECDHE-RSA-AES128-GCM-SHA256"))
        await expect_failure(url(18443, "/reset", "wss", "ws.test"), **ctx12("ECDHE-RSA-AES256-GCM-SHA384"))
        await chat(url(18443, "/echo", "wss", "ws.test"), code=1001, **ctx12("ECDHE-RSA-CHACHA20-POLY1305"))
    elif scenario == "wss-keys-hrr-update":
        # openssl s_client (TLS 1.3) offers an X25519 key share to a server that wants
        # secp384r1: a HelloRetryRequest, then the handshake. After the 101 its "K" command
        # sends a KeyUpdate that asks the server to update too; then a masked close frame.
        keylog = os.environ["SSLKEYLOGFILE"]
        p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:18447", "-servername", "ws.test",
                              "-tls1_3", "-groups", "X25519:secp384r1", "-keylogfile", keylog,
                              "-CAfile", cafile], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        req = (f"GET /echo?{QUERY} HTTP/1.1\r\nHost: ws.test:18447\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
               f"Cookie: {COOKIE}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        for chunk in (req, b"K\n", bytes([0x88, 0x82, 0x11, 0x22, 0x33, 0x44, 0x03 ^ 0x11, 0xE8 ^ 0x22])):
            time.sleep(1)
            p.stdin.write(chunk)
            p.stdin.flush()
        time.sleep(1)
        p.stdin.close()
        p.wait(timeout=10)
    elif scenario == "wss-aborted":
        # Python's client does not trust the self-signed certificate and gives up with a bare
        # FIN: no alert on the wire (TLS 1.2 keeps the rest of the handshake in the clear).
        strict = ssl.create_default_context()
        strict.maximum_version = ssl.TLSVersion.TLSv1_2
        await expect_failure(url(18443, "/echo", "wss", "ws.test"), ssl=strict,
                             host="127.0.0.1", port=18443, server_hostname="ws.test")
    elif scenario == "wss-alert":
        # curl (OpenSSL) rejects the certificate with an unknown_ca alert, in the clear
        # under TLS 1.2; the upgrade request is never sent. --http1.1 makes it offer ALPN
        # http/1.1 only, as WebSocket clients do.
        subprocess.run(["curl", "-s", "--http1.1", "--tls-max", "1.2", "--resolve", "ws.test:18443:127.0.0.1",
                        "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
                        "-H", "Sec-WebSocket-Version: 13",
                        "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                        "-H", f"Cookie: {COOKIE}", f"https://ws.test:18443/echo?{QUERY}"])
    elif scenario == "tls12-close-notify":
        # A TLS 1.2 handshake that finishes (ChangeCipherSpec and Finished both ways), then
        # only close_notify and FIN: a client that gave up before its request. Healthy TLS:
        # not an aborted handshake.
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        with socket.create_connection(("127.0.0.1", 18443)) as raw:
            tls = ctx.wrap_socket(raw, server_hostname="ws.test")
            time.sleep(0.2)
            try:
                tls.unwrap()
            except (ssl.SSLError, OSError):
                pass
    elif scenario == "tls-to-plain":
        # wss:// on a ws:// port: the ClientHello reaches nginx's plain HTTP listener, which
        # answers 400 Bad Request in plaintext and closes; the client's TLS fails.
        await expect_failure(url(18080, "/echo", "wss", "ws.test"), ssl=ssl.create_default_context(cafile=cafile),
                             host="127.0.0.1", port=18080, server_hostname="ws.test")
    elif scenario in ("connect-ok", "connect-407"):
        # wss:// through a forward proxy (tinyproxy): CONNECT, then TLS and the upgrade inside
        # the tunnel; the second proxy wants credentials the client does not send: 407.
        port = 18888 if scenario == "connect-ok" else 18889
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"CONNECT 127.0.0.1:18443 HTTP/1.1\r\nHost: 127.0.0.1:18443\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        print("  proxy said:", head.split(b"\r\n")[0].decode(errors="replace"), file=sys.stderr)
        if head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"):
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.set_alpn_protocols(["http/1.1"])
            await chat("wss://ws.test/echo", sock=sock, ssl=ctx, server_hostname="ws.test")
        else:
            sock.close()
    elif scenario == "reset-after-101":
        await expect_failure(url(18765, "/reset"))
    elif scenario == "idle-timeout":
        async def quiet():
            async with connect(url(18084, "/quiet"), additional_headers=HEADERS,
                               ping_interval=None, compression=None) as ws:
                try:
                    await ws.recv()
                except Exception as e:
                    print(f"  quiet connection ended: {e}", file=sys.stderr)
        for _ in range(3):
            await quiet()
    elif scenario == "ping-survives":
        async with connect(url(18084, "/quiet"), additional_headers=HEADERS,
                           ping_interval=1, ping_timeout=5, compression=None) as ws:
            await asyncio.sleep(6.5)
            await ws.close(1000)
    elif scenario == "bulk-mixed":
        print(f"  dns: {dns('ws.test').rr}", file=sys.stderr)
        plain_get(18090)
        tls_h2_get(18443, cafile)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"unrelated datagram", ("127.0.0.1", 18514))
        s.close()
        async with connect(url(18765, "/echo", host="ws.test"), additional_headers=HEADERS,
                           ping_interval=None, max_size=None, host="127.0.0.1",
                           port=18765, compression=None) as ws:
            rnd = random.Random(7)
            block = bytes(rnd.getrandbits(8) for _ in range(16384))
            for i in range(64):
                await ws.send(block)
                await ws.recv()
                if i % 16 == 0:
                    plain_get(18090, f"/page{i}")
            await ws.close(1000)
    elif scenario == "bad-accept":
        await expect_failure(url(18766, "/echo"))
    elif scenario == "refused":
        try:
            socket.create_connection(("127.0.0.1", 18798), timeout=2).close()
        except OSError as e:
            print(f"  connect: {e}", file=sys.stderr)
    elif scenario == "dns-failure":
        print(f"  dns: {dns('no-such-host.test').header}", file=sys.stderr)
    elif scenario == "dns-tcp":
        # Over TCP: a lookup nothing uses, a failing one (its length in a segment of its own),
        # and one of the name the WebSocket then asks for (Host: ws.test).
        for name, split in (("plain.test", False), ("no-such-host.test", True), ("ws.test", False)):
            print(f"  dns over tcp: {name}: {dns_tcp(name, split).header}", file=sys.stderr)
        await chat(url(18765, "/echo", host="ws.test"), messages=1, host="127.0.0.1", port=18765)
    elif scenario == "split-request":
        split_request(18765)
    elif scenario == "browser":
        # Headless Chromium loads the page from nginx; its script opens the WebSockets. The
        # flags keep it from calling home (only the loopback ports are recorded anyway).
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", "--disable-default-apps",
                        "--virtual-time-budget=8000", "--dump-dom",
                        "http://127.0.0.1:18080/browser.html"],
                       check=True, timeout=40, stderr=subprocess.DEVNULL)
    else:
        raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], sys.argv[2]))
