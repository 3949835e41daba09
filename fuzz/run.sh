#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after another, seeded from
# testdata/ (fuzz/seed.sh). Needs a nightly toolchain and cargo-fuzz. Crashes land in
# fuzz/artifacts/TARGET/; minimise one with `cargo +nightly fuzz tmin TARGET FILE` and commit
# it under tests/fuzz-regressions/TARGET/.
# Usage: bash fuzz/run.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pipeline http_split reader websocket tls_dns decode tls_decrypt scrub_secrets)
[ -d corpus/reader ] || bash seed.sh
cargo +nightly fuzz build -O
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" logs
  echo "== $t: ${secs}s"
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
    -max_len=65536 -print_final_stats=1 >"logs/$t.log" 2>&1
  echo "   exit $? $(grep -aE '^stat::number_of_executed_units' "logs/$t.log" | tail -1) $(grep -ac 'SUMMARY' "logs/$t.log") crashes"
done
