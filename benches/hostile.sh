#!/usr/bin/env bash
# Resource bounds under hostile input: generates ten captures (benches/hostile.py) and
# prints wall time and peak RSS of trim, trim --scrub, scrub, diagnose and flows on each. Not a test:
# figures are measured here, never asserted. The bound to compare against is 256 MiB.
# Usage: bash benches/hostile.sh   (keeps inputs in $BENCH_DIR when set)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${BENCH_DIR:-$(mktemp -d)}
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/pcap-surgery"

printf '%-10s %8s  %-14s %9s %11s  %s\n' capture size command time "peak RSS" result
for kind in ${KINDS:-flows header synflood reorder acks dns dnstcp chains attempts trickle}; do
  f="$dir/hostile-$kind.pcap"
  [ -f "$f" ] || python3 "$root/benches/hostile.py" "$kind" "$f"
  size=$(stat -c %s "$f")
  for cmd in trim "trim --scrub" scrub diagnose flows; do
    case $cmd in
      trim* | scrub) args=($cmd "$f" -o "$dir/out.pcap" --force -q) ;;
      diagnose) args=(diagnose --json "$f") ;;
      flows) args=(flows --json "$f") ;;
    esac
    # A fresh output each run: replacing the last run's makes the file system free its blocks
    # inside the timed run (40 ms for the DNS flood's 190 MB).
    rm -f "$dir/out.pcap"
    /usr/bin/time -f '%e %M %x' -o "$dir/time.txt" "$bin" "${args[@]}" >/dev/null 2>"$dir/err.txt" || true
    read -r t m code <"$dir/time.txt"
    note=$(grep -m1 -o 'warning: .*' "$dir/err.txt" | cut -c1-60 || true)
    awk -v k="$kind" -v s="$size" -v c="$cmd" -v t="$t" -v m="$m" -v x="$code" -v n="$note" \
      'BEGIN { printf "%-10s %6.0fMB  %-14s %8.2fs %8.1f MiB  exit %s %s\n", k, s / 1e6, c, t, m / 1024, x, n }'
  done
done
