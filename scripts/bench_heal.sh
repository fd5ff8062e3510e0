#!/usr/bin/env bash
# Push to pull request, timed (a benchmark, not a test): runs the tier-1 demo (`salve demo
# --json`, the release build, a fresh server and data folder each time) N times and prints the
# medians of: the whole push-to-PR time, each phase (first CI run, heal, second CI run, pull
# request pipeline) with the time the user's commands took in it (the critical path of job
# commands; in the heal, `checkout` and `salve heal` itself), and Salve's overhead: everything
# that is not a job command (queueing, promotions, sandbox and job set-up, the API).
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
user = [sum(r["phases"][p]["user_ms"] for p in names) for r in runs]
over = [r["total_ms"] - u for r, u in zip(runs, user)]
print(f"{'push to PR':<16} {total:7.2f} {med(user):13.2f} {med(over):7.2f}")
print(f"Salve's overhead: {med(over):.2f} s of {total:.2f} s = {100 * statistics.median(o / r['total_ms'] for o, r in zip(over, runs)):.0f}% "
      "(phases' own overhead plus the time between them: promotions, queueing, the push's hook)")
PY
