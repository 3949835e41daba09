#!/usr/bin/env bash
# Seeds each fuzz target's corpus from testdata/: whole captures for the reader and the
# pipeline, TCP payloads (via tshark) for the protocol targets, UDP payloads for DNS.
# Usage: bash fuzz/seed.sh   (then: cargo +nightly fuzz run TARGET)
set -euo pipefail
cd "$(dirname "$0")"
td=../testdata
for t in reader pipeline decode http_split websocket tls_dns tls_decrypt scrub_secrets; do mkdir -p "corpus/$t"; done
cp "$td"/*.keys corpus/tls_decrypt/ 2>/dev/null || true
for f in "$td"/*.pcap "$td"/*.pcapng "$td"/*.gz; do
  n=$(basename "$f")
  case "$f" in *.gz) gzip -dc "$f" > "corpus/reader/$n.raw" ;; *) cp "$f" "corpus/reader/$n" ;; esac
  cp "corpus/reader/$n"* corpus/pipeline/ 2>/dev/null || true
done
i=0
for f in "$td"/*.pcap "$td"/*.pcapng; do
  while IFS= read -r hex; do
    [ -n "$hex" ] || continue
    i=$((i + 1))
    printf '%s' "$hex" | xxd -r -p > "corpus/websocket/p$i"
    printf '%s' "$hex" | xxd -r -p > "corpus/tls_dns/p$i"
    { printf '\x80\x00\x07\x00'; printf '%s' "$hex" | xxd -r -p; } > "corpus/http_split/p$i"
  done < <(tshark -r "$f" -Y 'tcp.len > 0' -c 6 -T fields -e tcp.payload 2>/dev/null | tr -d ':')
  while IFS= read -r hex; do
    [ -n "$hex" ] || continue
    i=$((i + 1))
    printf '%s' "$hex" | xxd -r -p > "corpus/tls_dns/d$i"
  done < <(tshark -r "$f" -Y dns -c 4 -T fields -e udp.payload 2>/dev/null | tr -d ':')
done
python3 - <<'PY'
import struct, glob, os
# decode: Ethernet frames from the pcap seeds, with selector byte 0.
n = 0
for f in glob.glob("corpus/reader/*"):
    b = open(f, "rb").read()
    if len(b) < 24 or b[:4] != b"\xd4\xc3\xb2\xa1":
        continue
    link = struct.unpack("<I", b[20:24])[0]
    off = 24
    for _ in range(6):
        if off + 16 > len(b): break
        cap = struct.unpack("<I", b[off+8:off+12])[0]
        frame = b[off+16:off+16+cap]
        off += 16 + cap
        sel = {1: 0, 0: 1, 101: 2, 113: 3, 276: 4}.get(link, 0)
        n += 1
        open(f"corpus/decode/f{n}", "wb").write(bytes([sel]) + frame)
PY
ls corpus | while read -r t; do echo "$t: $(ls "corpus/$t" | wc -l) seeds"; done
