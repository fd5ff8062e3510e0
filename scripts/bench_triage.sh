#!/usr/bin/env bash
# Failure analysis at scale (a benchmark, not a test): throughput from the criterion benchmark
# (a generated 200 MB log, zero-shot and with five 200 MB baselines, `grep -c error` as the
# reference), then peak memory of `salve triage` on those files, on a 2 GB log that is one line,
# and on 100 MB of random bytes. Usage: scripts/bench_triage.sh   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
cargo bench -q -p salve-logs --bench excerpt -- --warm-up-time 1 --measurement-time 5 2>&1 |
  grep -E "reference|loaded in|^failure analysis|thrpt"
logs=target/bench-logs
[ -f "$logs/one-line-2g.log" ] || head -c 2147483648 /dev/zero | tr '\0' 'x' > "$logs/one-line-2g.log"
[ -f "$logs/random-100m.log" ] || head -c 104857600 /dev/urandom > "$logs/random-100m.log"
printf 'error: tiny\n' > "$logs/tiny.log"
peak() {
  local label=$1; shift
  local out
  out=$( { /usr/bin/time -f '%M %e' target/release/salve triage "$@" --format lines > /dev/null; } 2>&1 | tail -1)
  printf '%-44s peak RSS %6d KiB  %5.2f s\n' "$label" "${out%% *}" "${out##* }"
}
b=(--baseline "$logs/passed-200-1.log" --baseline "$logs/passed-200-2.log" --baseline "$logs/passed-200-3.log"
   --baseline "$logs/passed-200-4.log" --baseline "$logs/passed-200-5.log")
peak "a one-line log" --log "$logs/tiny.log"
peak "200 MB log, zero-shot" --log "$logs/failed-200.log"
peak "200 MB log, five 200 MB baselines" --log "$logs/failed-200.log" "${b[@]}"
peak "2 GB log that is one line" --log "$logs/one-line-2g.log"
peak "100 MB of random bytes" --log "$logs/random-100m.log"
