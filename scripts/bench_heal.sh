#!/usr/bin/env bash
# Push to pull request, timed (a benchmark, not a test): runs the tier-1 demo (`salve demo
# --json`, the release build, a fresh server and data folder each time) N times and prints the
# medians of: push to pull request on the server's clock (the first pipeline's creation to the
# pull-request pipeline's end; the heal overlaps the second CI run, which its push starts), each
# phase with the time its jobs' commands took (the critical path; in the heal, `checkout` and
# `salve heal` itself), and Salve's own time: each pipeline's time outside its jobs' commands
# (queueing, sandbox and job set-up, storing) plus the gaps between pipelines (promotions).
# Usage: scripts/bench_heal.sh [N=5]   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
cargo build --release -q
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
for i in $(seq 1 "$n"); do
  target/release/salve demo --json --dir "$runs/$i" | tail -1 > "$runs/$i.json"
done
python3 - "$runs" "$n" <<'PY'
import json, statistics, sys
runs = [json.load(open(f"{sys.argv[1]}/{i}.json")) for i in range(1, int(sys.argv[2]) + 1)]
med = lambda xs: statistics.median(xs) / 1000
names = ["first CI run", "heal", "second CI run", "pull request"]
total = med([r["total_ms"] for r in runs])
print(f"{len(runs)} runs of `salve demo` (tier 1: cargo fmt), medians, seconds")
print(f"{'phase':<16} {'wall':>7} {'job commands':>13} {'Salve':>7}")
for p in names:
    wall = med([r["phases"][p]["wall_ms"] for r in runs])
    user = med([r["phases"][p]["user_ms"] for r in runs])
    print(f"{p:<16} {wall:7.2f} {user:13.2f} {wall - user:7.2f}")
push = med([r["push_ms"] for r in runs])
salve = med([r["salve_ms"] for r in runs])
print(f"{'push to PR':<16} {total:7.2f}")
print(f"the push itself (git push until CI's pipeline exists): {push:.2f}")
share = statistics.median(r["salve_ms"] / r["total_ms"] for r in runs)
print(f"Salve's own time: {salve:.2f} s of {total:.2f} s = {100 * share:.0f}% "
      "(each pipeline's time outside its jobs' commands, plus the gaps between pipelines)")
PY
