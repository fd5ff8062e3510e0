#!/usr/bin/env bash
# Per-job overhead of `salve run`: a pipeline of 1 and of 50 trivial jobs (`true`), sandboxed
# (with a network of the job's own through slirp4netns, and with --no-network: a namespace with
# loopback only) and not, against plain bash running the same commands, side by side in one run.
# Usage: scripts/bench_run.sh [runs]   (needs a release build: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
salve=$PWD/target/release/salve
[ -x "$salve" ] || { echo "build first: cargo build --release" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SALVE_DATA_DIR=$work/data
make_repo() { # n
  local dir=$work/repo$1
  mkdir -p "$dir/.semaphore"
  {
    printf 'version: v1.0\nname: bench\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: B\n    task:\n      jobs:\n'
    for i in $(seq 1 "$1"); do printf '        - name: j%s\n          commands: ["true"]\n' "$i"; done
  } > "$dir/.semaphore/semaphore.yml"
  git -C "$dir" init -q -b main && git -C "$dir" add -A
  git -C "$dir" -c user.email=b@b -c user.name=b commit -qm bench
}
ms() { # command... ; prints the best wall time of $runs runs in ms
  local best=
  for _ in $(seq 1 "$runs"); do
    local t0 t1
    t0=$(date +%s%N); "$@" >/dev/null 2>&1 || true; t1=$(date +%s%N)
    local d=$(( (t1 - t0) / 1000000 ))
    if [ -z "$best" ] || [ "$d" -lt "$best" ]; then best=$d; fi
  done
  echo "$best"
}
make_repo 1; make_repo 50
bash_ms() { ms bash -c "for i in \$(seq 1 $1); do bash --noprofile --norc -c true; done"; }
printf '%-34s %10s %10s %14s\n' "" "1 job" "50 jobs" "per extra job"
for mode in sandbox no-network no-sandbox; do
  flag=(); [ $mode = no-sandbox ] && flag=(--no-sandbox); [ $mode = no-network ] && flag=(--no-network)
  one=$(cd "$work/repo1" && ms "$salve" run --jobs 1 "${flag[@]}")
  fifty=$(cd "$work/repo50" && ms "$salve" run --jobs 1 "${flag[@]}")
  printf '%-34s %8s ms %8s ms %11s ms\n' "salve run --jobs 1 ($mode)" "$one" "$fifty" "$(( (fifty - one) / 49 ))"
done
one=$(bash_ms 1); fifty=$(bash_ms 50)
printf '%-34s %8s ms %8s ms %11s ms\n' "plain bash, one bash per job" "$one" "$fifty" "$(( (fifty - one) / 49 ))"

# A job printing 1 GB: salve's peak memory (it must not grow with the output) and end-to-end
# ingestion speed, next to bash writing the same bytes to a file.
mkdir -p "$work/big/.semaphore"
printf 'version: v1.0\nname: big\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: B\n    task:\n      jobs:\n        - name: print\n          commands: ["yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789 | head -c 1000000000"]\n' > "$work/big/.semaphore/semaphore.yml"
git -C "$work/big" init -q -b main && git -C "$work/big" add -A && git -C "$work/big" -c user.email=b@b -c user.name=b commit -qm big
[ "${BENCH_SKIP_BIG:-}" = 1 ] && exit 0
sync; t0=$(date +%s%N)
peak=$(cd "$work/big" && /usr/bin/time -f %M "$salve" run --no-sandbox 2>&1 >/dev/null | tail -1)
t1=$(date +%s%N)
sync; t2=$(date +%s%N)
(set +o pipefail; yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789 | head -c 1000000000 > "$work/plain.out")
t3=$(date +%s%N)
stored=$(du -cb "$SALVE_DATA_DIR"/jobs/*/log | tail -1 | cut -f1)
rm -rf "$SALVE_DATA_DIR/jobs" "$work/plain.out"
echo
echo "1 GB of job output ($stored bytes stored): salve peak RSS ${peak} KiB; salve run $(( (t1 - t0) / 1000000 )) ms ($(( 1000000000000 / (t1 - t0) )) MB/s end to end); plain bash to a file $(( (t3 - t2) / 1000000 )) ms"
