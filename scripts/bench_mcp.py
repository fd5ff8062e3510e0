#!/usr/bin/env python3
"""MCP latency (a benchmark, not a test): p50/p99 of `jobs_logs` and `failure_summary` on a
failed job with a 100 MB log, with 20 MCP clients (the Python MCP SDK over Streamable HTTP, each
its own session) calling at once. Release build, default SQLite store.

Usage: python3 scripts/bench_mcp.py [CLIENTS] [CALLS_PER_CLIENT] [LOG_MB]   (from the repository root)
Needs the Python `mcp` package (scripts/test-tools.sh installs it).
"""

import asyncio
import os
import sys
import time

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

from salvebench import Server

CLIENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
CALLS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
LOG_MB = int(sys.argv[3]) if len(sys.argv) > 3 else 100


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
    server = Server("salve-bench-mcp-")
    try:
        job = server.big_log_job(LOG_MB)
        size = os.path.getsize(os.path.join(server.data, "jobs", job, "log"))
        times, elapsed = asyncio.run(load(f"{server.url}/mcp", server.token, job))
        calls = sum(len(v) for v in times.values())
        print(f"{CLIENTS} MCP clients x {CALLS} rounds on a job with a {size / 1e6:.0f} MB log: "
              f"{calls} calls in {elapsed:.1f} s ({calls / elapsed:.0f}/s)")
        for tool, values in times.items():
            print(f"  {tool:16} p50 {pct(values, 0.5):7.1f} ms   p99 {pct(values, 0.99):7.1f} ms   max {max(values):7.1f} ms")
    finally:
        server.stop()


main()
