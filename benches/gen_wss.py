#!/usr/bin/env python3
"""A large deterministic wss:// capture with its key log, for the decryption benchmark.

    gen_wss.py --out big.pcap --keys big.keys [--size-mb 1000] [--sessions 8] [--seed 1]

Each session is TLS 1.3 with TLS_AES_128_GCM_SHA256 over Ethernet/IPv4, built record by
record as a client and server would send it (RFC 8446): ClientHello, ServerHello,
ChangeCipherSpec and the encrypted handshake (EncryptedExtensions, Finished) under the
handshake secrets, the client's Finished, then under the application secrets an HTTP upgrade
request, `101 Switching Protocols`, mostly server-to-client binary messages in 16 KiB records
with a ping/pong every so often, close frames 1000, close_notify and FIN. The traffic secrets
are random (seeded) and written to the key log in the NSS format, so the capture decrypts in
Wireshark with `-o tls.keylog_file:big.keys` as it does in pcap-surgery with `--keylog`.
"""
import argparse
import base64
import hashlib
import hmac
import random
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MSS = 1448


def expand_label(secret, label, length):
    info = struct.pack(">HB", length, 6 + len(label)) + b"tls13 " + label + b"\x00"
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(secret, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


class Protect:
    """One direction's record protection (RFC 8446 §5.2)."""

    def __init__(self, secret):
        self.aead = AESGCM(expand_label(secret, b"key", 16))
        self.iv = expand_label(secret, b"iv", 12)
        self.seq = 0

    def record(self, inner_type, content):
        plain = content + bytes([inner_type])
        header = struct.pack(">BHH", 23, 0x0303, len(plain) + 16)
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big")))
        self.seq += 1
        return header + self.aead.encrypt(nonce, plain, header)


def plain_record(kind, body):
    return struct.pack(">BHH", kind, 0x0303, len(body)) + body


def handshake(kind, body):
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def ext(kind, body):
    return struct.pack(">HH", kind, len(body)) + body


def client_hello(rng, random_bytes, sni):
    name = sni.encode()
    exts = ext(0, struct.pack(">HBH", len(name) + 3, 0, len(name)) + name)
    exts += ext(16, struct.pack(">HB", 9, 8) + b"http/1.1")
    exts += ext(43, b"\x02\x03\x04")
    exts += ext(51, struct.pack(">HHH", 36, 29, 32) + rng.randbytes(32))
    body = b"\x03\x03" + random_bytes + b"\x20" + rng.randbytes(32) + b"\x00\x02\x13\x01\x01\x00"
    body += struct.pack(">H", len(exts)) + exts
    return plain_record(22, handshake(1, body))


def server_hello(rng, random_bytes):
    exts = ext(43, b"\x03\x04") + ext(51, struct.pack(">HH", 29, 32) + rng.randbytes(32))
    body = b"\x03\x03" + random_bytes + b"\x20" + rng.randbytes(32) + b"\x13\x01\x00"
    body += struct.pack(">H", len(exts)) + exts
    return plain_record(22, handshake(2, body))


def ws_frame(opcode, payload, mask=None):
    n = len(payload)
    head = bytes([0x80 | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


class Writer:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.t = 1_700_000_000.0
        self.bytes = 24

    def packet(self, src, dst, sport, dport, seq, ack, flags, payload=b""):
        tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0)
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, bytes(src), bytes(dst))
        frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp + payload
        self.t += 0.00002
        sec = int(self.t)
        self.f.write(struct.pack("<IIII", sec, int((self.t - sec) * 1e6), len(frame), len(frame)))
        self.f.write(frame)
        self.bytes += 16 + len(frame)


class Conn:
    def __init__(self, w, i):
        self.w = w
        self.ends = [([10, 0, 0, 1], 40000 + i), ([10, 0, 0, 2], 443)]
        self.seq = [1000 * i + 1, 5000 * i + 1]

    def flags(self, side, flags, payload=b""):
        (src, sp), (dst, dp) = self.ends[side], self.ends[1 - side]
        self.w.packet(src, dst, sp, dp, self.seq[side], self.seq[1 - side], flags, payload)

    def send(self, side, data):
        for at in range(0, len(data), MSS):
            chunk = data[at:at + MSS]
            self.flags(side, 0x18, chunk)
            self.seq[side] += len(chunk)
        self.flags(1 - side, 0x10)


def session(w, rng, i, size, keys):
    c = Conn(w, i)
    c.flags(0, 0x02)
    c.seq[0] += 1
    c.flags(1, 0x12)
    c.seq[1] += 1
    c.flags(0, 0x10)
    crandom, srandom = rng.randbytes(32), rng.randbytes(32)
    secrets = {k: rng.randbytes(32) for k in ("chs", "shs", "cts", "sts")}
    r = crandom.hex()
    keys.write(f"CLIENT_HANDSHAKE_TRAFFIC_SECRET {r} {secrets['chs'].hex()}\n")
    keys.write(f"SERVER_HANDSHAKE_TRAFFIC_SECRET {r} {secrets['shs'].hex()}\n")
    keys.write(f"CLIENT_TRAFFIC_SECRET_0 {r} {secrets['cts'].hex()}\n")
    keys.write(f"SERVER_TRAFFIC_SECRET_0 {r} {secrets['sts'].hex()}\n")
    c.send(0, client_hello(rng, crandom, "ws%d.example.com" % i))
    shs, chs = Protect(secrets["shs"]), Protect(secrets["chs"])
    flight = server_hello(rng, srandom) + plain_record(20, b"\x01")
    flight += shs.record(22, handshake(8, b"\x00\x00") + handshake(20, rng.randbytes(32)))
    c.send(1, flight)
    c.send(0, plain_record(20, b"\x01") + chs.record(22, handshake(20, rng.randbytes(32))))
    cts, sts = Protect(secrets["cts"]), Protect(secrets["sts"])
    key = base64.b64encode(rng.randbytes(16)).decode()
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    c.send(0, cts.record(23, (f"GET /feed HTTP/1.1\r\nHost: ws{i}.example.com\r\nUpgrade: websocket\r\n"
                              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n").encode()))
    c.send(1, sts.record(23, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"))
    block = rng.randbytes(16384 - 4)
    sent, n = 0, 0
    while sent < size:
        c.send(1, sts.record(23, ws_frame(2, block)))
        sent += 16384 + 22
        n += 1
        if n % 200 == 0:
            c.send(0, cts.record(23, ws_frame(9, b"p", mask=b"\x01\x02\x03\x04")))
            c.send(1, sts.record(23, ws_frame(10, b"p")))
    c.send(0, cts.record(23, ws_frame(8, b"\x03\xe8", mask=b"\x01\x02\x03\x04")))
    c.send(1, sts.record(23, ws_frame(8, b"\x03\xe8")))
    c.send(0, cts.record(21, b"\x01\x00"))
    c.send(1, sts.record(21, b"\x01\x00"))
    c.flags(0, 0x11)
    c.seq[0] += 1
    c.flags(1, 0x11)
    c.seq[1] += 1
    c.flags(0, 0x10)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--size-mb", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    w = Writer(a.out)
    per = a.size_mb * 1_000_000 // a.sessions
    with open(a.keys, "w") as keys:
        keys.write("# TLS secrets of the sessions in %s\n" % a.out)
        for i in range(a.sessions):
            session(w, rng, i, per, keys)
    w.f.close()


if __name__ == "__main__":
    main()
