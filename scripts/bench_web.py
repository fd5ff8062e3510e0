#!/usr/bin/env python3
"""The job page of a failed job with a 100 MB log (a benchmark, not a test): time to the whole
HTML of the first view (the failure report and the last 1000 lines; earlier lines are pages of
their own), and of a page from the middle of the log, over N requests each, with a browser's
session cookie. The reference in the same run: reading the whole log file once (`cat > /dev/null`),
which a page that showed everything would at least pay. Release build, default SQLite store.

Usage: python3 scripts/bench_web.py [REQUESTS] [LOG_MB]   (from the repository root)
"""

import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from salvebench import Server

REQUESTS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
LOG_MB = int(sys.argv[2]) if len(sys.argv) > 2 else 100


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(p * len(values))) - 1))]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


def main():
    server = Server("salve-bench-web-")
    try:
        job = server.big_log_job(LOG_MB)
        log = os.path.join(server.data, "jobs", job, "log")
        opener = urllib.request.build_opener(NoRedirect)
        form = urllib.parse.urlencode({"token": server.token, "next": "/"}).encode()
        try:
            opener.open(server.url + "/login", form)
        except urllib.error.HTTPError as e:
            cookie = e.headers["set-cookie"].split(";")[0]

        def get(path):
            t = time.perf_counter()
            req = urllib.request.Request(server.url + path, headers={"Cookie": cookie})
            with urllib.request.urlopen(req) as r:
                body = r.read()
            return (time.perf_counter() - t) * 1000, body

        _, first = get(f"/jobs/{job}")
        assert b"Why it failed" in first and b"mismatched types" in first, "the page lacks the report"
        lines = server.api(f"/api/v1/jobs/{job}/logs?tail=1")["total"]
        views = {"first view (report + last lines)": f"/jobs/{job}", "a page from the middle": f"/jobs/{job}?from={lines // 2}"}
        t = time.perf_counter()
        subprocess.run(["cat", log], stdout=subprocess.DEVNULL, check=True)
        cat_ms = (time.perf_counter() - t) * 1000
        print(f"a failed job with a {os.path.getsize(log) / 1e6:.0f} MB log ({lines} lines); {REQUESTS} requests each:")
        for name, path in views.items():
            times, size = [], 0
            for _ in range(REQUESTS):
                ms, body = get(path)
                times.append(ms)
                size = len(body)
            print(f"  {name:34} p50 {pct(times, 0.5):6.1f} ms   p99 {pct(times, 0.99):6.1f} ms   {size / 1024:.0f} KiB of HTML")
        print(f"  reference: cat of the whole log      {cat_ms:6.1f} ms")
    finally:
        server.stop()


main()
