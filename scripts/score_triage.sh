#!/usr/bin/env bash
# Scores `salve triage --format lines` with the shared scorer (../shared/conformance/logs/score.py)
# on two labelled sets, next to the blind tails of the same logs measured in the same run:
#   - CiDiff (../shared/conformance/logs/cidiff): Java builds, with and without baselines;
#   - Salve's own set (crates/logs/tests/logset): real failing runs of real tools of many
#     ecosystems, in the log formats of eight CIs (scripts/logset/make.py made it).
# Usage: scripts/score_triage.sh [max-bytes]     (build first: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SALVE_CONFORMANCE:-../shared/conformance}/logs
score=$data/score.py
salve=$PWD/target/release/salve
[ -x "$salve" ] || { echo "build first: cargo build --release" >&2; exit 2; }
max=${1:-4096}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The last N bytes of a log, as text (a Semaphore event log reads as its text), whole lines.
tail_of() {
  python3 - "$1" "$2" <<'PY'
import sys
sys.path.insert(0, "scripts/logset")
from frames import semaphore_text
raw = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
text = semaphore_text(raw) if raw.lstrip().startswith('{"event"') else raw
tail = text.encode()[-int(sys.argv[2]):].decode("utf-8", "replace")
sys.stdout.write(tail.split("\n", 1)[1] if "\n" in tail and len(text.encode()) > int(sys.argv[2]) else tail)
PY
}

row() { # name labels predictions
  python3 "$score" "$2" "$3" --json "$out/s.json" --quiet
  python3 - "$1" "$out/s.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[2]))
print(f"| {sys.argv[1]} | {s['n_logs']} | {s['f1']:.3f} | {s['contained']:.3f} | {s['any_hit']:.3f} | {s['mean_bytes']:,.0f} |")
PY
}

run_set() { # name logs-dir labels-dir [baselines-dir]
  local name=$1 logs=$2 labels=$3 base=${4:-}
  mkdir -p "$out/$name"/{zero,base,t4,t2}
  for f in "$logs"/*.log; do
    id=$(basename "$f" .log)
    "$salve" triage --log "$f" --format lines --max-bytes "$max" > "$out/$name/zero/$id.txt"
    [ -z "$base" ] || "$salve" triage --log "$f" --baseline "$base/$id.log" --format lines --max-bytes "$max" > "$out/$name/base/$id.txt"
    tail_of "$f" 4096 > "$out/$name/t4/$id.txt"
    tail_of "$f" 2048 > "$out/$name/t2/$id.txt"
  done
  [ -z "$base" ] || row "$name: \`salve triage\` with baselines" "$labels" "$out/$name/base"
  row "$name: \`salve triage\` zero-shot" "$labels" "$out/$name/zero"
  row "$name: the log's last 4,096 bytes" "$labels" "$out/$name/t4"
  row "$name: the log's last 2,048 bytes" "$labels" "$out/$name/t2"
}

echo "| set: excerpt | logs | F1 | whole chunk contained | any labelled line hit | mean bytes |"
echo "| --- | --- | --- | --- | --- | --- |"
run_set CiDiff "$data/cidiff/logs" "$data/cidiff/labels" "$data/cidiff/baselines"
run_set "Salve's log set" crates/logs/tests/logset/logs crates/logs/tests/logset/labels
