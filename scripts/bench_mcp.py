#!/usr/bin/env python3
"""MCP latency (a benchmark, not a test): p50/p99 of `jobs_logs` and `failure_summary` on a
failed job with a 100 MB log, with 20 MCP clients (the Python MCP SDK over Streamable HTTP, each
its own session) calling at once. Release build, default SQLite store.

Usage: python3 scripts/bench_mcp.py [CLIENTS] [CALLS_PER_CLIENT] [LOG_MB]   (from the repository root)
Needs the Python `mcp` package (scripts/test-tools.sh installs it).
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

CLIENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
CALLS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
LOG_MB = int(sys.argv[3]) if len(sys.argv) > 3 else 100

PIPELINE = f"""version: v1.0
name: Big log
agent:
  machine:
    type: e1-standard-2
blocks:
  - name: Test
    task:
      jobs:
        - name: noisy
          commands:
            - "yes 'test suite::case ... ok (build output line of a long noisy job)' | head -c {LOG_MB * 1000 * 1000}"
            - "echo 'error[E0308]: mismatched types' >&2; exit 1"
"""


def run(*args, cwd=None, env=None):
    return subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(p * len(values))) - 1))]


async def client(url, token, job, times):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, streamable_http_client(url, http_client=http) as s, ClientSession(s[0], s[1]) as session:
        await session.initialize()
        for _ in range(CALLS):
            for tool in ("jobs_logs", "failure_summary"):
                t = time.perf_counter()
                r = await session.call_tool(tool, {"job_id": job})
                times[tool].append((time.perf_counter() - t) * 1000)
                if getattr(r, "is_error", getattr(r, "isError", False)):
                    raise SystemExit(f"{tool} failed: {r.content}")


async def load(url, token, job):
    times = {"jobs_logs": [], "failure_summary": []}
    start = time.perf_counter()
    await asyncio.gather(*(client(url, token, job, times) for _ in range(CLIENTS)))
    return times, time.perf_counter() - start


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True)
    salve = os.path.abspath("target/release/salve")
    work = tempfile.mkdtemp(prefix="salve-bench-mcp-")
    data = os.path.join(work, "data")
    token = run(salve, "token", "create", "bench", "--data-dir", data).strip()
    server = subprocess.Popen(
        [salve, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "SALVE_LOG": "warn"},
    )
    url = server.stdout.readline().split()[-1]
    env = {**os.environ, "SALVE_SERVER": url, "SALVE_TOKEN": token}

    def api(path):
        req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    try:
        run(salve, "project", "create", "big", env=env)
        repo = os.path.join(work, "big")
        os.makedirs(os.path.join(repo, ".semaphore"))
        with open(os.path.join(repo, ".semaphore", "semaphore.yml"), "w") as f:
            f.write(PIPELINE)
        run("git", "init", "-q", "-b", "main", cwd=repo)
        run("git", "add", "-A", cwd=repo)
        run("git", "-c", "user.email=b@x", "-c", "user.name=B", "commit", "-qm", "init", cwd=repo)
        run("git", "-c", f"http.extraHeader=Authorization: Bearer {token}", "push", "-q", f"{url}/git/big.git",
            "main", cwd=repo)
        while True:
            pipelines = api("/api/v1/pipelines?project=big")["pipelines"]
            if pipelines and pipelines[0]["state"] == "done":
                break
            time.sleep(0.5)
        job = api(f"/api/v1/pipelines/{pipelines[0]['id']}")["blocks"][0]["jobs"][0]["id"]
        size = os.path.getsize(os.path.join(data, "jobs", job, "log"))
        times, elapsed = asyncio.run(load(f"{url}/mcp", token, job))
        calls = sum(len(v) for v in times.values())
        print(f"{CLIENTS} MCP clients x {CALLS} rounds on a job with a {size / 1e6:.0f} MB log: "
              f"{calls} calls in {elapsed:.1f} s ({calls / elapsed:.0f}/s)")
        for tool, values in times.items():
            print(f"  {tool:16} p50 {pct(values, 0.5):7.1f} ms   p99 {pct(values, 0.99):7.1f} ms   max {max(values):7.1f} ms")
    finally:
        server.terminate()
        server.wait()


main()
