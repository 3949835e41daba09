#!/usr/bin/env bash
# Throughput and peak memory of `pcap-surgery trim` on generated captures (not a test:
# timings are measured here, never asserted). Usage: bash benches/trim.sh [SIZES_MB...]
# Inputs come from ../shared/bench/gen_capture.py into a temporary directory (or $BENCH_DIR,
# kept between runs). Each command runs 3 times; the median wall time is reported.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
gen="$root/../shared/bench/gen_capture.py"
sizes=("${@:-200 1000}")
[ $# -gt 0 ] || sizes=(200 1000)
dir=${BENCH_DIR:-$(mktemp -d)}
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/pcap-surgery"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# measure LABEL FILE CMD... : prints label, median seconds, MB/s, peak RSS MiB
measure() {
  local label=$1 file=$2
  shift 2
  local size times=() rss=0
  size=$(stat -c %s "$file")
  for _ in 1 2 3; do
    # Each run writes a new file, as tcpdump's does: replacing a large earlier output costs
    # the file system more than writing it.
    rm -f "$dir/out.pcap"
    /usr/bin/time -f '%e %M' -o "$dir/time.txt" "$@" >/dev/null 2>"$dir/err.txt" || { cat "$dir/err.txt" >&2; return 1; }
    read -r t m <"$dir/time.txt"
    times+=("$t")
    [ "$m" -gt "$rss" ] && rss=$m
  done
  local med
  med=$(printf '%s\n' "${times[@]}" | median)
  awk -v l="$label" -v t="$med" -v s="$size" -v r="$rss" \
    'BEGIN { printf "%-34s %8.2f s %9.0f MB/s %8.1f MiB\n", l, t, s / 1e6 / (t > 0 ? t : 0.001), r / 1024 }'
}

printf '%-34s %10s %14s %12s\n' "command" "median" "throughput" "peak RSS"
for mb in "${sizes[@]}"; do
  f="$dir/gen-$mb.pcap"
  [ -f "$f" ] || python3 "$gen" --out "$f" --size-mb "$mb" >/dev/null
  measure "cat ${mb}MB >/dev/null" "$f" cat "$f"
  if command -v tcpdump >/dev/null; then
    measure "tcpdump SYN/FIN/RST ${mb}MB" "$f" tcpdump -r "$f" -w "$dir/out.pcap" \
      'tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0'
  fi
  measure "trim ${mb}MB" "$f" "$bin" trim "$f" -o "$dir/out.pcap" --force -q
  ls -l "$f" "$dir/out.pcap" | awk '{print "  " $5 " bytes  " $9}'
  measure "trim --scrub ${mb}MB" "$f" "$bin" trim --scrub "$f" -o "$dir/out.pcap" --force -q
  measure "scrub ${mb}MB" "$f" "$bin" scrub "$f" -o "$dir/out.pcap" --force -q
  measure "scrub --pseudonymize ${mb}MB" "$f" "$bin" scrub --pseudonymize --key k "$f" -o "$dir/out.pcap" --force -q
  measure "diagnose ${mb}MB" "$f" "$bin" diagnose --json "$f"
  measure "flows ${mb}MB" "$f" "$bin" flows --json "$f"
done
