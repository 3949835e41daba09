#!/usr/bin/env python3
"""Re-encapsulate a recorded capture: every IP packet of SOURCE (Ethernet, pcap) is written
again inside a link layer or tunnel that loopback cannot produce, unchanged inside.

    encapsulate.py SOURCE OUT_DIR

writes OUT_DIR/<stem>-<kind>.pcap for each kind below. The inner packets are the real ones
(recorded from real software by generate.sh); only the wrapping is built here, field by field
from the specifications named, and tshark dissects every result to the same HTTP and
WebSocket facts as the source (checked by tests/encapsulation.rs).
"""
import os
import struct
import sys

LINK_ETHERNET, LINK_PPP, LINK_RADIOTAP, LINK_NFLOG = 1, 9, 127, 239


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), "little-endian pcap expected"
    link = struct.unpack("<I", data[20:24])[0]
    assert link == LINK_ETHERNET, "Ethernet source expected"
    at, out = 24, []
    while at < len(data):
        sec, frac, incl, orig = struct.unpack("<IIII", data[at:at + 16])
        frame = data[at + 16:at + 16 + incl]
        at += 16 + incl
        et = struct.unpack(">H", frame[12:14])[0]
        assert et in (0x0800, 0x86DD), "IP over Ethernet expected"
        out.append((sec, frac, frame[14:]))
    return magic, out


def write_pcap(path, magic, link, records):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, link))
        for sec, frac, frame in records:
            f.write(struct.pack("<IIII", sec, frac, len(frame), len(frame)))
            f.write(frame)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(">%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload):
    h = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                    bytes(src), bytes(dst))
    return h[:10] + struct.pack(">H", csum(h)) + h[12:] + payload


def ipv6(src, dst, proto, payload):
    return struct.pack(">IHBB16s16s", 0x60000000, len(payload), proto, 64, bytes(src), bytes(dst)) + payload


def udp(src_ip, dst_ip, sport, dport, payload, v6=False):
    length = 8 + len(payload)
    h = struct.pack(">HHHH", sport, dport, length, 0)
    if v6:
        pseudo = bytes(src_ip) + bytes(dst_ip) + struct.pack(">IxxxB", length, 17)
    else:
        pseudo = bytes(src_ip) + bytes(dst_ip) + struct.pack(">xBH", 17, length)
    c = csum(pseudo + h + payload) or 0xFFFF
    return h[:6] + struct.pack(">H", c) + payload


def ethernet(payload, ethertype=0x0800, src=b"\x02\0\0\0\0\x01", dst=b"\x02\0\0\0\0\x02"):
    return dst + src + struct.pack(">H", ethertype) + payload


def inner_ethertype(ip):
    return 0x86DD if ip[0] >> 4 == 6 else 0x0800


# Outer endpoints: documentation addresses (RFC 5737, RFC 3849), chosen by direction.
A4, B4 = [192, 0, 2, 1], [198, 51, 100, 1]
A6 = [0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [1]
B6 = [0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [2]


def wrap(kind, ip, forward):
    a4, b4 = (A4, B4) if forward else (B4, A4)
    a6, b6 = (A6, B6) if forward else (B6, A6)
    if kind == "ppp":  # RFC 1662 HDLC-like framing: address, control, protocol.
        return bytes([0xFF, 0x03, 0x00, 0x21 if ip[0] >> 4 == 4 else 0x57]) + ip
    if kind == "nflog":  # libpcap nflog.h: header, then little-endian TLVs padded to 4.
        def tlv(t, v):
            b = struct.pack("<HH", 4 + len(v), t) + v
            return b + b"\0" * (-len(b) % 4)
        hdr = bytes([2 if ip[0] >> 4 == 4 else 10, 0]) + struct.pack(">H", 1)
        return hdr + tlv(1, struct.pack(">HBx", inner_ethertype(ip), 1)) + tlv(10, b"ws\0") + tlv(9, ip)
    if kind == "radiotap":  # radiotap header (no fields), 802.11 data frame, LLC/SNAP.
        rt = struct.pack("<BBHI", 0, 0, 8, 0)
        flags = 0x01 if forward else 0x02  # to or from the distribution system
        ap, sta, far = b"\x02\0\0\0\0\xaa", b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02"
        addrs = ap + sta + far if forward else sta + ap + far
        wifi = bytes([0x08, flags]) + b"\0\0" + addrs + b"\0\0"
        return rt + wifi + bytes([0xAA, 0xAA, 0x03, 0, 0, 0]) + struct.pack(">H", inner_ethertype(ip)) + ip
    if kind == "gre":  # RFC 2890 GRE with a key, over IPv4.
        gre = struct.pack(">HHI", 0x2000, inner_ethertype(ip), 42) + ip
        return ethernet(ipv4(a4, b4, 47, gre))
    if kind == "ipip":  # RFC 2003 IP in IP.
        return ethernet(ipv4(a4, b4, 4 if ip[0] >> 4 == 4 else 41, ip))
    if kind == "vxlan":  # RFC 7348 over IPv4/UDP with a checksum.
        vx = struct.pack(">II", 0x08000000, 4242 << 8) + ethernet(ip, inner_ethertype(ip))
        return ethernet(ipv4(a4, b4, 17, udp(a4, b4, 49152 + len(ip) % 1000, 4789, vx)))
    if kind == "gtpu":  # 3GPP TS 29.281 T-PDU with a PDU session container, over IPv6.
        ext = bytes([1, 0x10 if forward else 0x00, 9, 0])  # length 1, QFI 9, no next
        body = struct.pack(">HB", 0, 0) + bytes([0x85]) + ext + ip
        gtp = struct.pack(">BBHI", 0x34, 0xFF, len(body), 0x1000) + body
        return ethernet(ipv6(a6, b6, 17, udp(a6, b6, 2152, 2152, gtp, v6=True)), 0x86DD)
    raise ValueError(kind)


def with_tcp_checksum(ip):
    """Loopback leaves TCP checksums to an offload that never happens; a packet that crossed a
    tunnel was checksummed by its sender, so the inner checksum is computed here."""
    if ip[0] >> 4 == 4:
        hl, proto, src, dst = (ip[0] & 0x0F) * 4, ip[9], ip[12:16], ip[16:20]
        seg = ip[hl:struct.unpack(">H", ip[2:4])[0]]
        pseudo = src + dst + struct.pack(">xBH", proto, len(seg))
    else:
        hl, proto, src, dst = 40, ip[6], ip[8:24], ip[24:40]
        seg = ip[40:40 + struct.unpack(">H", ip[4:6])[0]]
        pseudo = src + dst + struct.pack(">IxxxB", len(seg), proto)
    if proto != 6:
        return ip
    seg = seg[:16] + b"\0\0" + seg[18:]
    c = csum(pseudo + seg)
    return ip[:hl + 16] + struct.pack(">H", c) + ip[hl + 18:]


def client_to_server(ip):
    """On loopback both ends share an address: the client is the higher (ephemeral) port."""
    hl = (ip[0] & 0x0F) * 4 if ip[0] >> 4 == 4 else 40
    sport, dport = struct.unpack(">HH", ip[hl:hl + 4])
    return sport > dport


KINDS = {"ppp": LINK_PPP, "nflog": LINK_NFLOG, "radiotap": LINK_RADIOTAP, "gre": LINK_ETHERNET,
         "ipip": LINK_ETHERNET, "vxlan": LINK_ETHERNET, "gtpu": LINK_ETHERNET}


def main():
    source, out_dir = sys.argv[1], sys.argv[2]
    magic, packets = read_pcap(source)
    stem = os.path.basename(source).rsplit(".", 1)[0]
    packets = [(s, f, with_tcp_checksum(ip)) for s, f, ip in packets]
    for kind, link in KINDS.items():
        recs = [(s, f, wrap(kind, ip, client_to_server(ip))) for s, f, ip in packets]
        write_pcap(os.path.join(out_dir, "%s-%s.pcap" % (stem, kind)), magic, link, recs)


if __name__ == "__main__":
    main()
