#!/usr/bin/env python3
"""Load check of `salve serve` (a benchmark, not a test).

50 pushes in parallel to 5 projects (10 branches each) on a release build with the default
SQLite store; waits until every workflow finished; fails when one is lost or the server logged
"database is locked"; prints push-to-first-command latency (median, p99).

Usage: python3 scripts/bench_server.py [PUSHES] [PROJECTS]   (from the repository root)
Set SALVE_DATABASE_URL=postgres://... to run it on PostgreSQL.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PUSHES = int(sys.argv[1]) if len(sys.argv) > 1 else 50
PROJECTS = int(sys.argv[2]) if len(sys.argv) > 2 else 5

PIPELINE = """version: v1.0
name: Bench
agent:
  machine:
    type: e1-standard-2
    os_image: ubuntu2004
blocks:
  - name: Test
    task:
      jobs:
        - name: unit
          commands:
            - checkout
            - echo "built $SEMAPHORE_GIT_BRANCH"
"""


def run(*args, cwd=None, env=None):
    return subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True)
    salve = os.path.abspath("target/release/salve")
    work = tempfile.mkdtemp(prefix="salve-bench-")
    data = os.path.join(work, "data")
    token = run(salve, "token", "create", "bench", "--data-dir", data).strip()
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen(
        [salve, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "SALVE_LOG": "warn"},
    )
    url = server.stdout.readline().split()[-1]
    env = {**os.environ, "SALVE_SERVER": url, "SALVE_TOKEN": token}

    def api(path):
        req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    try:
        repos = []
        for p in range(PROJECTS):
            name = f"p{p}"
            run(salve, "project", "create", name, env=env)
            repo = os.path.join(work, name)
            os.makedirs(os.path.join(repo, ".semaphore"))
            with open(os.path.join(repo, ".semaphore", "semaphore.yml"), "w") as f:
                f.write(PIPELINE)
            run("git", "init", "-q", "-b", "main", cwd=repo)
            run("git", "add", "-A", cwd=repo)
            run("git", "-c", "user.email=b@x", "-c", "user.name=B", "commit", "-qm", "init", cwd=repo)
            repos.append((name, repo))
        pushed = {}
        errors = []

        def push(i):
            name, repo = repos[i % PROJECTS]
            branch = f"b{i}"
            try:
                pushed[(name, branch)] = time.time() * 1000
                run("git", "-c", f"http.extraHeader=Authorization: Bearer {token}", "push", "-q",
                    f"{url}/git/{name}.git", f"HEAD:refs/heads/{branch}", cwd=repo)
            except subprocess.CalledProcessError as e:
                errors.append(e.stderr)

        start = time.time()
        threads = [threading.Thread(target=push, args=(i,)) for i in range(PUSHES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            sys.exit(f"{len(errors)} pushes failed: {errors[0]}")
        while True:
            pipelines = [p for name, _ in repos for p in api(f"/api/v1/pipelines?project={name}")["pipelines"]]
            if len(pipelines) >= PUSHES and all(p["state"] == "done" for p in pipelines):
                break
            if time.time() - start > 600:
                sys.exit(f"timed out: {len(pipelines)} pipelines, {sum(p['state'] == 'done' for p in pipelines)} done")
            time.sleep(0.5)
        elapsed = time.time() - start
        latencies = []
        for p in pipelines:
            job = api(f"/api/v1/pipelines/{p['id']}")["blocks"][0]["jobs"][0]
            first = api(f"/api/v1/jobs/{job['id']}")["commands"][0]["started_ms"]
            latencies.append(first - pushed[(p["project"], p["branch"])])
        results = {}
        for p in pipelines:
            results[p["result"]] = results.get(p["result"], 0) + 1
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(round(0.99 * len(latencies))) - 1)]
        log.flush()
        locked = open(os.path.join(work, "server.log")).read().count("database is locked")
        print(f"{PUSHES} pushes to {PROJECTS} projects: {len(pipelines)} workflows finished in {elapsed:.1f} s, "
              f"results {results}, 'database is locked' in the server log: {locked}")
        print(f"push-to-first-command latency: median {statistics.median(latencies):.0f} ms, "
              f"p99 {p99:.0f} ms, max {latencies[-1]:.0f} ms ({os.cpu_count()} cores, {os.cpu_count()} pipelines at once)")
        if len(pipelines) != PUSHES or locked:
            sys.exit("lost workflows or lock errors")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
