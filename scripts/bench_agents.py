#!/usr/bin/env python3
"""Jobs on agents against jobs in the server, side by side in one run (a benchmark, not a test).

For each executor (the server's own, `--jobs 8`; then 1, 2 and 4 `salve agent` processes with 2
slots each, the server running none itself), on a release build with SQLite:
  - throughput: one pipeline of JOBS trivial jobs pushed; jobs per second from the push to the
    pipeline's end (every job dispatched, run in the sandbox, recorded);
  - latency: push -> first command, the median of ROUNDS single-job pipelines (the first
    command's start as the job recorded it, against the push's start);
  - log streaming: one job printing LOG_MB MB, the job's log bytes over the time from its first
    command to its end as the server stored it (the agent streams every byte before it reports).

Usage: python3 scripts/bench_agents.py [JOBS] [ROUNDS] [LOG_MB]   (from the repository root)
"""

import statistics
import sys
import time

from salvebench import Server

JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 40
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
LOG_MB = int(sys.argv[3]) if len(sys.argv) > 3 else 50

HEAD = """version: v1.0
name: Bench
agent:
  machine:
    type: e1-standard-2
blocks:
  - name: Jobs
    task:
      jobs:
"""


def pipeline(jobs, command):
    return HEAD + "".join(f"        - name: j{i}\n          commands: ['{command}']\n" for i in range(jobs))


def wait_done(server, project, count):
    while True:
        ps = server.api(f"/api/v1/pipelines?project={project}")["pipelines"]
        if len(ps) >= count and all(p["state"] == "done" for p in ps):
            return ps
        time.sleep(0.02)


def jobs_of(server, pipeline_id):
    shown = server.api(f"/api/v1/pipelines/{pipeline_id}")
    return [j for b in shown["blocks"] for j in b["jobs"]]


def measure(agents):
    args = ["--jobs", "8"] if agents == 0 else ["--jobs", "0", "--agent-pool", "s1-bench"]
    server = Server("salve-bench-agents-", args=args)
    procs = server.agents("s1-bench", agents, 2) if agents else []
    try:
        # Throughput.
        repo = server.project("many", pipeline(JOBS, "true"))
        start = time.time()
        server.push(repo, "many", "main")
        done = wait_done(server, "many", 1)
        elapsed = time.time() - start
        assert done[0]["result"] == "passed", done[0]
        throughput = JOBS / elapsed
        # Latency.
        repo = server.project("one", pipeline(1, "true"))
        latencies = []
        for i in range(ROUNDS):
            pushed = time.time() * 1000
            server.push(repo, "one", f"HEAD:refs/heads/b{i}")
            ps = wait_done(server, "one", i + 1)
            newest = max(ps, key=lambda p: p["created_ms"])
            job = jobs_of(server, newest["id"])[0]
            first = server.api(f"/api/v1/jobs/{job['id']}")["commands"][0]["started_ms"]
            latencies.append(first - pushed)
        # Log streaming.
        size = LOG_MB * 1000 * 1000
        repo = server.project("log", pipeline(1, f"yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c {size}"))
        server.push(repo, "log", "main")
        p = wait_done(server, "log", 1)[0]
        job = server.api(f"/api/v1/jobs/{jobs_of(server, p['id'])[0]['id']}")
        seconds = (job["done_ms"] - job["commands"][0]["started_ms"]) / 1000
        streamed = size / 1e6 / seconds
        return throughput, statistics.median(latencies), streamed
    finally:
        for a in procs:
            a.terminate()
            a.wait()
        server.stop()


def main():
    rows = []
    for agents in [0, 1, 2, 4]:
        name = "server's executor (--jobs 8)" if agents == 0 else f"{agents} agent(s) x 2 slots"
        rows.append((name, *measure(agents)))
    base = rows[0]
    print(f"| executor | jobs/s ({JOBS} trivial jobs) | push -> first command (median of {ROUNDS}) | log of {LOG_MB} MB stored |")
    print("| --- | --- | --- | --- |")
    for name, tput, lat, mbs in rows:
        print(f"| {name} | {tput:.1f} ({tput / base[1]:.2f}x) | {lat:.0f} ms | {mbs:.0f} MB/s |")


if __name__ == "__main__":
    main()
