#!/usr/bin/env bash
# The wss:// decryption benchmark (not a test: figures are measured, never asserted).
#
# Generates a deterministic TLS 1.3 wss capture and its key log with benches/gen_wss.py
# (needs Python's `cryptography`), then times trim, diagnose and flows with --keylog and
# without it: RUNS runs each (default 3), median wall time, MB/s and peak RSS.
#
# Usage: bash benches/wss.sh          SIZE_MB=1000 RUNS=3 BENCH_DIR=dir bash benches/wss.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-3}
size=${SIZE_MB:-1000}
dir=${BENCH_DIR:-$(mktemp -d)}
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT
python3 -c 'import cryptography' 2>/dev/null || pip install -q cryptography
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/pcap-surgery"
cap="$dir/wss-$size.pcap"
keys="$dir/wss-$size.keys"
[ -f "$cap" ] || python3 "$root/benches/gen_wss.py" --out "$cap" --keys "$keys" --size-mb "$size"
bytes=$(stat -c %s "$cap")
cat "$cap" >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
row() {
  local label=$1
  shift
  local times=() rss=0
  for _ in $(seq "$runs"); do
    local out
    /usr/bin/time -f '%e %M' -o "$dir/time.txt" "$@" >/dev/null 2>&1
    out=$(tail -1 "$dir/time.txt")
    times+=("${out% *}")
    local m=${out#* }
    [ "$m" -gt "$rss" ] && rss=$m
  done
  local t
  t=$(printf '%s\n' "${times[@]}" | median)
  printf '| %-34s | %7.3f s | %6.0f MB/s | %7.1f MiB |\n' "$label" "$t" \
    "$(echo "$bytes / 1000000 / $t" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
}

echo "### wss, TLS 1.3 AES-128-GCM ($((bytes / 1000000)) MB)"
echo
echo "| command                            |  median   |  throughput |  peak RSS   |"
echo "|------------------------------------|-----------|-------------|-------------|"
row "trim --keylog (decrypting)" "$bin" trim -q --force --keylog "$keys" "$cap" -o "$dir/out.pcap"
row "trim (without keys)" "$bin" trim -q --force "$cap" -o "$dir/out.pcap"
row "diagnose --keylog" "$bin" diagnose -q --keylog "$keys" "$cap"
row "flows --keylog" "$bin" flows --keylog "$keys" "$cap"
"$bin" trim -q --force --keylog "$keys" "$cap" -o "$dir/out.pcap"
echo
echo "trimmed with keys: $(stat -c %s "$dir/out.pcap") bytes"
