#!/usr/bin/env bash
# The performance benchmark (not a test: figures are measured, never asserted).
#
# Generates deterministic captures with ../shared/bench/gen_capture.py into a temporary
# directory (or $BENCH_DIR, kept between runs): 1 GB and 200 MB pcap/Ethernet, and 200 MB
# pcapng and pcap/SLL2 variants. On each it times, in the same run, `cat` (the floor),
# tcpdump's port-filter copy and its cheapest pass, `editcap -s 128`, `tshark -Y -w`
# (200 MB only), and pcap-surgery trim, trim --scrub, diagnose and flows: RUNS runs each
# (default 3), median wall time, MB/s, packets/s, peak RSS, and the ratios to tcpdump's
# port-filter copy and to cat. Then a batch of 8 x 200 MB files with -j 1 and -j 2.
#
# Usage: bash benches/run.sh            (installs tcpdump/tshark from Debian when missing)
#        SIZES="200" RUNS=5 bash benches/run.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
gen="$root/../shared/bench/gen_capture.py"
[ -f "$gen" ] || { echo "benches/run.sh: needs $gen (the shared capture generator)" >&2; exit 1; }
runs=${RUNS:-3}
sizes=(${SIZES:-1000 200})
dir=${BENCH_DIR:-$(mktemp -d)}
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT

need=()
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v tshark >/dev/null || need+=(tshark)
command -v editcap >/dev/null || need+=(wireshark-common)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/pcap-surgery"
filter='tcp port 80 or tcp port 8080 or tcp port 443 or udp port 53'

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# measure LABEL BYTES PACKETS CMD... : one table row; remembers the median in $last
last=0
floor=0
tcpdump_t=0
measure() {
  local label=$1 size=$2 packets=$3
  shift 3
  local times=() rss=0 n=$runs
  [[ $label == tshark* ]] && n=1
  for ((i = 0; i < n; i++)); do
    # Each run writes a new file, as every tool's first run would: replacing a large earlier
    # output costs the file system more than writing it (and tcpdump's is the smallest).
    rm -f "$dir/out" "$dir/td.pcap" "$dir/ec.pcap" "$dir/ts.pcap"
    # Wall time from bash's microsecond clock (time's %e has 10 ms steps); RSS from time.
    local t0=$EPOCHREALTIME
    /usr/bin/time -f '%M' -o "$dir/time.txt" "$@" >/dev/null 2>"$dir/err.txt" || { cat "$dir/err.txt" >&2; return 1; }
    local t1=$EPOCHREALTIME
    read -r m <"$dir/time.txt"
    times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')")
    [ "$m" -gt "$rss" ] && rss=$m
  done
  last=$(printf '%s\n' "${times[@]}" | median)
  awk -v l="$label" -v t="$last" -v s="$size" -v p="$packets" -v r="$rss" -v c="$floor" -v d="$tcpdump_t" '
    BEGIN {
      t = (t > 0 ? t : 0.005)
      vs_tcpdump = (d > 0 ? sprintf("%6.1fx", d / t) : "      ")
      vs_cat = (c > 0 ? sprintf("%5.2fx", c / t) : "     ")
      printf "| %-30s | %7.3f s | %7.0f MB/s | %6.2f M pkt/s | %7.1f MiB | %s | %s |\n", l, t, s / 1e6 / t, p / 1e6 / t, r / 1024, vs_tcpdump, vs_cat
    }'
}

header() {
  echo
  echo "### $1"
  echo
  echo "| command                        |  median  |  throughput  |   packets/s    |  peak RSS  | vs tcpdump | vs cat |"
  echo "|--------------------------------|----------|--------------|----------------|------------|------------|--------|"
}

packets_of() { "$bin" trim --json -q "$1" -o /dev/null 2>/dev/null | sed -n 's/.*"packets_in":\([0-9]*\).*/\1/p'; }

echo "## pcap-surgery benchmark"
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); files in page cache; median of $runs runs."
echo "Versions: $("$bin" --version), $(tcpdump --version 2>&1 | head -1), $(tshark --version | head -1)"

run_file() {
  local f=$1 label=$2 full=$3
  local p b
  cat "$f" >/dev/null
  p=$(packets_of "$f")
  b=$(stat -c %s "$f")
  header "$label ($(stat -c %s "$f" | awk '{printf "%.0f MB", $1 / 1e6}'), $p packets)"
  floor=0; tcpdump_t=0
  measure "cat (the floor)" "$b" "$p" cat "$f"; floor=$last
  if [ "$full" = 1 ]; then
    measure "tcpdump port filter -w" "$b" "$p" tcpdump -r "$f" -w "$dir/td.pcap" "$filter"; tcpdump_t=$last
    measure "tcpdump SYN/FIN/RST -w" "$b" "$p" tcpdump -r "$f" -w "$dir/td.pcap" 'tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0'
    measure "editcap -s 128" "$b" "$p" editcap -s 128 "$f" "$dir/ec.pcap"
    if [ "$(stat -c %s "$f")" -le 300000000 ]; then
      measure "tshark -Y ... -w" "$b" "$p" tshark -r "$f" -Y "tcp.port == 80 or tcp.port == 8080 or tcp.port == 443 or udp.port == 53" -w "$dir/ts.pcap"
    fi
  fi
  measure "pcap-surgery trim" "$b" "$p" "$bin" trim "$f" -o "$dir/out" --force -q
  echo "|   (output $(stat -c %s "$dir/out" | awk '{printf "%.1f MB", $1 / 1e6}'))  | | | | | | |"
  measure "pcap-surgery trim --scrub" "$b" "$p" "$bin" trim --scrub "$f" -o "$dir/out" --force -q
  measure "pcap-surgery diagnose" "$b" "$p" "$bin" diagnose --json "$f"
  measure "pcap-surgery flows" "$b" "$p" "$bin" flows --json "$f"
}

for mb in "${sizes[@]}"; do
  f="$dir/gen-$mb.pcap"
  [ -f "$f" ] || python3 "$gen" --out "$f" --size-mb "$mb" >/dev/null
  run_file "$f" "pcap, Ethernet" 1
done
small=${sizes[-1]}
f="$dir/gen-$small.pcapng"
[ -f "$f" ] || python3 "$gen" --out "$f" --size-mb "$small" --format pcapng >/dev/null
run_file "$f" "pcapng, Ethernet" 1
f="$dir/gen-$small-sll2.pcap"
[ -f "$f" ] || python3 "$gen" --out "$f" --size-mb "$small" --linktype sll2 >/dev/null
run_file "$f" "pcap, Linux SLL2" 1

# Batch: 8 files of the smallest size, -j 1 against -j 2.
mkdir -p "$dir/batch"
for i in 1 2 3 4 5 6 7 8; do
  [ -f "$dir/batch/b$i.pcap" ] || cp "$dir/gen-$small.pcap" "$dir/batch/b$i.pcap"
done
cat "$dir"/batch/*.pcap >/dev/null
total=$((8 * $(stat -c %s "$dir/gen-$small.pcap")))
header "batch: 8 x ${small} MB, trim --out-dir (5 runs)"
floor=0; tcpdump_t=0
p=$((8 * $(packets_of "$dir/gen-$small.pcap")))
runs_saved=$runs; runs=5
rm -rf "$dir/bout"
measure "trim -j 1 (8 files)" "$total" "$p" "$bin" trim -j 1 -q --force --out-dir "$dir/bout" "$dir"/batch/*.pcap; j1=$last
measure "trim -j 2 (8 files)" "$total" "$p" "$bin" trim -j 2 -q --force --out-dir "$dir/bout" "$dir"/batch/*.pcap; j2=$last
# Outputs in memory (tmpfs): without the kernel's writeback of 130 MB of output competing
# with the two workers for the two cores, this is the scaling of the work itself.
shm=""
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  shm=$(mktemp -d /dev/shm/pcap-surgery-bench.XXXXXX)
  measure "trim -j 1 (8 files, out on tmpfs)" "$total" "$p" "$bin" trim -j 1 -q --force --out-dir "$shm" "$dir"/batch/*.pcap; s1=$last
  measure "trim -j 2 (8 files, out on tmpfs)" "$total" "$p" "$bin" trim -j 2 -q --force --out-dir "$shm" "$dir"/batch/*.pcap; s2=$last
  rm -rf "$shm"
fi
runs=$runs_saved
echo
awk -v a="$j1" -v b="$j2" 'BEGIN { printf "-j 2 is %.2fx faster than -j 1 (outputs on disk)", a / b }'
[ -z "$shm" ] || awk -v a="$s1" -v b="$s2" 'BEGIN { printf "; %.2fx with outputs on tmpfs", a / b }'
echo "."
