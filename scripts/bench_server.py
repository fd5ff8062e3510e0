#!/usr/bin/env python3
"""Load check of `salve serve` (a benchmark, not a test).

50 pushes in parallel to 5 projects (10 branches each) on a release build with the default
SQLite store; waits until every workflow finished; fails when one is lost or the server logged
"database is locked"; prints push-to-first-command latency (median, p99).

Usage: python3 scripts/bench_server.py [PUSHES] [PROJECTS]   (from the repository root)
Set SALVE_DATABASE_URL=postgres://... to run it on PostgreSQL.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from salvebench import Server

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


def main():
    log_path = os.path.join(tempfile.mkdtemp(prefix="salve-bench-log-"), "server.log")
    log = open(log_path, "w")
    server = Server("salve-bench-", log=log)
    api = server.api
    try:
        repos = [(f"p{p}", server.project(f"p{p}", PIPELINE)) for p in range(PROJECTS)]
        pushed = {}
        errors = []

        def push(i):
            name, repo = repos[i % PROJECTS]
            branch = f"b{i}"
            try:
                pushed[(name, branch)] = time.time() * 1000
                server.push(repo, name, f"HEAD:refs/heads/{branch}")
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
        locked = open(log_path).read().count("database is locked")
        print(f"{PUSHES} pushes to {PROJECTS} projects: {len(pipelines)} workflows finished in {elapsed:.1f} s, "
              f"results {results}, 'database is locked' in the server log: {locked}")
        print(f"push-to-first-command latency: median {statistics.median(latencies):.0f} ms, "
              f"p99 {p99:.0f} ms, max {latencies[-1]:.0f} ms ({os.cpu_count()} cores, {os.cpu_count()} pipelines at once)")
        if len(pipelines) != PUSHES or locked:
            sys.exit("lost workflows or lock errors")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
