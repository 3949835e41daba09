#!/usr/bin/env python3
"""Hostile captures for the resource-bound benchmark (benches/hostile.sh), written streaming:

  flows     1,000,000 concurrent TCP flows, each opened and sent half an HTTP request head,
            none ever closed (every flow stays undecided and open)
  header    one WebSocket upgrade request whose head never ends: 200 MB of header lines
  synflood  2,000,000 SYNs from spoofed addresses to one port, never answered
  reorder   4,000 concurrent WebSocket connections whose data segments all arrive in reverse
            order, so every segment waits for a hole
  acks      one connection that never says anything: 2,000,000 pure ACKs after its handshake,
            every one waiting for a classification that never comes
  dns       2,000,000 DNS queries (distinct names and ids, from a few thousand ports), none
            ever answered
  dnstcp    15,000 DNS-over-TCP connections, each sending 30 KB of a 60 KB message that never
            ends, half of them after a whole query (every connection holds part of a message)
  chains    2,000 concurrent WebSockets, each server sending a frame header that promises
            1 GB and then 1,100 one-byte segments of it, all connections interleaved (every
            connection holds the longest chain of waiting bulk the cut rules allow)
  attempts  20,000 WebSocket upgrades within a fifth of a second, all with the same key, each
            refused (404) after a failed lookup of another name (pairing of proxy legs and
            blaming of lookups, attempt against attempt)
  trickle   20 WebSocket upgrade requests whose 60 KB heads come one byte per segment
            (1.2 million segments), each head searched for its end as it grows, and 20 TLS
            ClientHellos of 9 KB cut into one-byte records, a record per segment

    hostile.py KIND OUT.pcap
"""
import struct, sys

MSS = 1448


def csum(b):
    if len(b) & 1:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


class Pcap:
    def __init__(self, path):
        self.f = open(path, "wb", buffering=1 << 22)
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.t = 1_700_000_000_000_000  # microseconds

    def tcp(self, src, dst, sport, dport, seq, ack, flags, payload=b"", dt=10):
        # TCP checksum left zero (as with offload); decoders do not rely on it.
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
        self.ip(6, src, dst, tcp + payload, dt)

    def udp(self, src, dst, sport, dport, payload, dt=10):
        self.ip(17, src, dst, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, dt)

    def ip(self, proto, src, dst, l4, dt):
        """One IPv4 packet over Ethernet, `dt` microseconds after the last."""
        self.t += dt
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + l4
        self.f.write(struct.pack("<IIII", self.t // 1_000_000, self.t % 1_000_000, len(frame), len(frame)))
        self.f.write(frame)

    def close(self):
        self.f.close()


SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
SERVER = bytes([10, 9, 0, 1])


def ip_of(i):
    return bytes([10, 100 + (i >> 24) % 100, (i >> 16) & 0xFF, (i >> 8) & 0xFF])


def flows(p, n=1_000_000):
    for i in range(n):
        c, sp = ip_of(i), 1024 + (i & 0xFF) * 200 + 1
        p.tcp(c, SERVER, sp, 80, 1000, 0, SYN, dt=1)
        p.tcp(SERVER, c, 80, sp, 5000, 1001, SYN | ACK, dt=1)
        p.tcp(c, SERVER, sp, 80, 1001, 5001, ACK, dt=1)
        p.tcp(c, SERVER, sp, 80, 1001, 5001, PSH | ACK, b"GET /chat/%d HTTP/1.1\r\nHost: a.example\r\n" % i, dt=1)


def header(p, size=200_000_000):
    c = bytes([10, 0, 0, 2])
    p.tcp(c, SERVER, 40000, 80, 1000, 0, SYN)
    p.tcp(SERVER, c, 80, 40000, 5000, 1001, SYN | ACK)
    p.tcp(c, SERVER, 40000, 80, 1001, 5001, ACK)
    seq = 1001
    first = b"GET /chat HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    line = b"X-Pad: " + b"a" * 90 + b"\r\n"
    chunk = (line * (MSS // len(line) + 1))[:MSS]
    p.tcp(c, SERVER, 40000, 80, seq, 5001, PSH | ACK, first)
    seq += len(first)
    sent = 0
    while sent < size:
        p.tcp(c, SERVER, 40000, 80, seq, 5001, ACK, chunk, dt=2)
        seq += len(chunk)
        sent += len(chunk) + 70
        if sent % (MSS * 32) < MSS + 70:
            p.tcp(SERVER, c, 80, 40000, 5001, seq, ACK, dt=2)


def synflood(p, n=2_000_000):
    for i in range(n):
        p.tcp(ip_of(i * 7919), SERVER, 1024 + i % 60000, 443, i * 2654435761, 0, SYN, dt=1)


def upgraded(p, conns, first=0):
    """Opens `conns` WebSocket connections: (client, port, server seq, client seq) of each."""
    import base64, hashlib
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    state = []
    for i in range(first, first + conns):
        c, sp = ip_of(i + 7), 30000 + i % 30000
        key = base64.b64encode(hashlib.sha1(b"k%d" % i).digest()[:16])
        acc = base64.b64encode(hashlib.sha1(key + guid).digest())
        req = b"GET /chat HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n"
        p.tcp(c, SERVER, sp, 80, 1000, 0, SYN)
        p.tcp(SERVER, c, 80, sp, 5000, 1001, SYN | ACK)
        p.tcp(c, SERVER, sp, 80, 1001, 5001, ACK)
        p.tcp(c, SERVER, sp, 80, 1001, 5001, PSH | ACK, req)
        p.tcp(SERVER, c, 80, sp, 5001, 1001 + len(req), PSH | ACK, resp)
        state.append((c, sp, 5001 + len(resp), 1001 + len(req)))
    return state


def reorder(p, conns=4000, segments=40):
    state = upgraded(p, conns)
    # One big unmasked binary frame per connection, its segments sent last-first, all
    # connections interleaved: every segment but the first waits for the hole before it.
    body = bytes(range(256)) * (MSS * segments // 256 + 1)
    frame = b"\x82\x7f" + struct.pack("!Q", MSS * segments - 10) + body[: MSS * segments - 10]
    segs = [frame[k * MSS:(k + 1) * MSS] for k in range(segments)]
    for k in reversed(range(segments)):
        for (c, sp, sseq, cseq) in state:
            p.tcp(SERVER, c, 80, sp, sseq + k * MSS, cseq, ACK, segs[k], dt=1)
    for (c, sp, sseq, cseq) in state:
        end = sseq + MSS * segments
        p.tcp(SERVER, c, 80, sp, end, cseq, FIN | ACK)
        p.tcp(c, SERVER, sp, 80, cseq, end + 1, FIN | ACK)


def chains(p, conns=2000, segments=1100):
    state = upgraded(p, conns, 10_000)
    # The header and a first byte in one segment: a bulk frame that starts a chain.
    for (c, sp, sseq, cseq) in state:
        p.tcp(SERVER, c, 80, sp, sseq, cseq, PSH | ACK, b"\x82\x7f" + struct.pack("!Q", 1 << 30) + b"x", dt=1)
    for k in range(1, segments + 1):
        for (c, sp, sseq, cseq) in state:
            p.tcp(SERVER, c, 80, sp, sseq + 10 + k, cseq, ACK, b"x", dt=1)


def attempts(p, n=20_000):
    dns_server = bytes([10, 9, 0, 53])
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    for i in range(n):
        c, port = ip_of(i + 5), 30000 + i % 30000
        question = b"".join(bytes([len(l)]) + l for l in (b"h%d" % i, b"example")) + b"\0\0\1\0\1"
        for flags, src, dst in ((0x0100, c, dns_server), (0x8183, dns_server, c)):
            msg = struct.pack("!HHHHHH", i & 0xFFFF, flags, 1, 0, 0, 0) + question
            sp, dp = (port, 53) if src == c else (53, port)
            p.udp(src, dst, sp, dp, msg, dt=1)
        sp = 20000 + i % 40000
        req = (b"GET /x HTTP/1.1\r\nHost: other%d.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n") % i
        resp = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        p.tcp(c, SERVER, sp, 80, 1000, 0, SYN, dt=1)
        p.tcp(SERVER, c, 80, sp, 5000, 1001, SYN | ACK, dt=1)
        p.tcp(c, SERVER, sp, 80, 1001, 5001, ACK, dt=1)
        p.tcp(c, SERVER, sp, 80, 1001, 5001, PSH | ACK, req, dt=1)
        p.tcp(SERVER, c, 80, sp, 5001, 1001 + len(req), PSH | ACK, resp, dt=1)
        p.tcp(SERVER, c, 80, sp, 5001 + len(resp), 1001 + len(req), FIN | ACK, dt=1)
        p.tcp(c, SERVER, sp, 80, 1001 + len(req), 5002 + len(resp), FIN | ACK, dt=1)


def acks(p, n=2_000_000):
    c = bytes([10, 1, 1, 1])
    p.tcp(c, SERVER, 40000, 80, 1000, 0, SYN)
    p.tcp(SERVER, c, 80, 40000, 5000, 1001, SYN | ACK)
    for _ in range(n):
        p.tcp(c, SERVER, 40000, 80, 1001, 5001, ACK, dt=1)


def dns(p, n=2_000_000):
    resolver = bytes([10, 9, 0, 53])
    for i in range(n):
        name = b"".join(bytes([len(l)]) + l for l in (b"h%d" % i, b"example", b"com")) + b"\0"
        q = struct.pack("!HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"
        p.udp(ip_of(i % 5000), resolver, 1024 + i % 4000, 53, q, dt=3)


def dnstcp(p, conns=15_000):
    resolver = bytes([10, 9, 0, 53])
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02ws\x07example\x00\x00\x01\x00\x01"
    partial = struct.pack("!H", 60_000) + query[:12] + b"\0" * 29_000
    for i in range(conns):
        data = (struct.pack("!H", len(query)) + query if i % 2 else b"") + partial
        c, sp = ip_of(i + 7), 10_000 + i % 50_000
        p.tcp(c, resolver, sp, 53, 1000, 0, SYN)
        p.tcp(resolver, c, 53, sp, 5000, 1001, SYN | ACK)
        p.tcp(c, resolver, sp, 53, 1001, 5001, ACK)
        for k in range(0, len(data), 1400):
            p.tcp(c, resolver, sp, 53, 1001 + k, 5001, ACK, data[k:k + 1400], dt=1)


def trickle(p, conns=20, pad=60_000):
    for i in range(conns):
        c, sp = ip_of(i + 3), 20000 + i
        p.tcp(c, SERVER, sp, 80, 1000, 0, SYN)
        p.tcp(SERVER, c, 80, sp, 5000, 1001, SYN | ACK)
        p.tcp(c, SERVER, sp, 80, 1001, 5001, ACK)
        head = (b"GET /chat?x=" + b"a" * pad + b" HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n")
        for k in range(len(head)):
            p.tcp(c, SERVER, sp, 80, 1001 + k, 5001, ACK, head[k:k + 1], dt=1)
    for i in range(conns):
        c, sp = ip_of(i + 103), 21000 + i
        p.tcp(c, SERVER, sp, 443, 1000, 0, SYN)
        p.tcp(SERVER, c, 443, sp, 5000, 1001, SYN | ACK)
        p.tcp(c, SERVER, sp, 443, 1001, 5001, ACK)
        exts = b"\x00\x15" + struct.pack("!H", 9000) + b"\0" * 9000  # padding extension
        body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
                + struct.pack("!H", len(exts)) + exts)
        hello = b"\x01" + struct.pack("!I", len(body))[1:] + body
        seq = 1001
        for k in range(len(hello)):
            record = b"\x16\x03\x01\x00\x01" + hello[k:k + 1]
            p.tcp(c, SERVER, sp, 443, seq, 5001, ACK, record, dt=1)
            seq += len(record)


if __name__ == "__main__":
    kind, out = sys.argv[1], sys.argv[2]
    p = Pcap(out)
    {"flows": flows, "header": header, "synflood": synflood, "reorder": reorder, "acks": acks, "dns": dns,
     "dnstcp": dnstcp, "chains": chains, "attempts": attempts,
     "trickle": trickle}[kind](p)
    p.close()
