#!/usr/bin/env bash
# Scores `salve triage --format lines` on the CiDiff logs (../shared/conformance/logs), with and
# without baselines, using the shared scorer. Usage: scripts/score_triage.sh [max-bytes]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SALVE_CONFORMANCE:-../shared/conformance}/logs
salve=$PWD/target/release/salve
[ -x "$salve" ] || { echo "build first: cargo build --release" >&2; exit 2; }
max=${1:-4096}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/zero" "$out/base"
for f in "$data"/cidiff/logs/*.log; do
  id=$(basename "$f" .log)
  "$salve" triage --log "$f" --format lines --max-bytes "$max" > "$out/zero/$id.txt"
  "$salve" triage --log "$f" --baseline "$data/cidiff/baselines/$id.log" --format lines --max-bytes "$max" > "$out/base/$id.txt"
done
echo "== with baselines"; python3 "$data/score.py" "$data/cidiff/labels" "$out/base"
echo "== zero-shot"; python3 "$data/score.py" "$data/cidiff/labels" "$out/zero"
