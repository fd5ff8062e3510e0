#!/usr/bin/env python3
"""Replays the heal corpus (crates/cli/tests/heal_corpus.toml) with `salve heal replay`.

Each case becomes a replay case folder: its repository with the green commit and the breaking
commit, the breaking commit run through `salve run` (the real sandbox and toolbox), and the failed
jobs' logs with their command records. Then `salve heal replay --cases DIR` prints the per-class
table. Usage:

    python3 scripts/replay_corpus.py [--salve target/release/salve] [--out DIR] [CASE ...]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quoted(s):
    return "'" + s.replace("'", "''") + "'"


def pipeline(case):
    env = "".join(f"            - name: {k}\n              value: {quoted(v)}\n" for k, v in case.get("env", {}).items())
    env = f"          env_vars:\n{env}" if env else ""
    commands = "".join(f"            - {quoted(c)}\n" for c in case["commands"])
    return (
        "version: v1.0\nname: CI\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: Check\n    task:\n"
        f"      jobs:\n        - name: check\n{env}          commands:\n            - checkout\n{commands}"
    )


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def write(repo, files):
    for path, text in files.items():
        p = repo / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def materialize(case, out, salve, data):
    folder = out / case["name"]
    # The repository's folder names the project `salve run` records (and caches) it as.
    repo = folder / case["name"]
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    files = {".semaphore/semaphore.yml": pipeline(case), **case["green"]}
    if case.get("salve_toml"):
        files["salve.toml"] = case["salve_toml"]
    write(repo, files)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=Tester", "commit", "-qm", "green")
    write(repo, case["break"])
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=Tester", "commit", "-qm", "break")
    env = dict(os.environ, SALVE_DATA_DIR=str(data))
    caches = data / "cache"
    before = set(caches.iterdir()) if caches.exists() else set()
    run = subprocess.run([salve, "run", "--json", "--jobs", "1"], cwd=repo, env=env, capture_output=True, text=True)
    failed = []
    for line in run.stdout.splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if e.get("event") == "job_finished" and e.get("result") != "passed":
            failed.append((e["job"], e["job_id"]))
    if not failed:
        print(f"{case['name']}: the breaking commit passed (skipped)", file=sys.stderr)
        shutil.rmtree(folder)
        return
    logs = folder / "logs"
    logs.mkdir()
    for job, job_id in failed:
        raw = subprocess.run([salve, "logs", "--raw", job_id], env=env, capture_output=True)
        (logs / f"{job}.log").write_bytes(raw.stdout)
        records = data / "jobs" / job_id / "commands.json"
        if records.exists():
            shutil.copy(records, logs / f"{job}.commands.json")
    # The project's cache as the run left it: a rerun sees it, as a heal job does.
    for new in (set(caches.iterdir()) if caches.exists() else set()) - before:
        shutil.copytree(new, folder / "cache")
    (folder / "case.toml").write_text(f"kind = {json.dumps(case['kind'])}\nexpect = {json.dumps(case['expect'])}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--salve", default=str(ROOT / "target/release/salve"))
    ap.add_argument("--out", help="where the case folders go (default: a temporary folder)")
    ap.add_argument("--corpus", default=str(ROOT / "crates/cli/tests/heal_corpus.toml"))
    ap.add_argument("cases", nargs="*", help="case names (default: all)")
    a = ap.parse_args()
    a.salve = str(Path(a.salve).resolve())
    corpus = tomllib.loads(Path(a.corpus).read_text())["case"]
    if a.cases:
        corpus = [c for c in corpus if c["name"] in a.cases]
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="salve-replay-"))
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o755)
    data = out.parent / (out.name + ".data")
    for case in corpus:
        materialize(case, out, a.salve, data)
    code = subprocess.run([a.salve, "heal", "replay", "--cases", str(out), "--json", str(out / "replay.json")]).returncode
    print(f"cases in {out}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
