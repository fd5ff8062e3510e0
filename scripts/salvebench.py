"""What the benchmark scripts share: a release build of `salve serve` on a free port with a
fresh data folder and token, its API, and sample repositories pushed to it."""

import json
import os
import subprocess
import tempfile
import time
import urllib.request

BIG_LOG = """version: v1.0
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
            - "yes 'test suite::case ... ok (build output line of a long noisy job)' | head -c {size}"
            - "echo 'error[E0308]: mismatched types' >&2; exit 1"
"""


def run(*args, cwd=None, env=None):
    return subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


class Server:
    """`salve serve` on 127.0.0.1:0 in a temporary data folder (release build)."""

    def __init__(self, prefix, log=subprocess.DEVNULL, args=()):
        subprocess.run(["cargo", "build", "--release", "--quiet"], check=True)
        self.salve = os.path.abspath("target/release/salve")
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.data = os.path.join(self.work, "data")
        self.token = run(self.salve, "token", "create", "bench", "--data-dir", self.data).strip()
        self.process = subprocess.Popen(
            [self.salve, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data, *args],
            stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "SALVE_LOG": "warn"},
        )
        self.url = self.process.stdout.readline().split()[-1]
        self.env = {**os.environ, "SALVE_SERVER": self.url, "SALVE_TOKEN": self.token}

    def api(self, path):
        req = urllib.request.Request(self.url + path, headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def project(self, name, pipeline):
        """Creates project `name` and a repository beside it whose one commit holds `pipeline`."""
        run(self.salve, "project", "create", name, env=self.env)
        repo = os.path.join(self.work, name)
        os.makedirs(os.path.join(repo, ".semaphore"))
        with open(os.path.join(repo, ".semaphore", "semaphore.yml"), "w") as f:
            f.write(pipeline)
        run("git", "init", "-q", "-b", "main", cwd=repo)
        run("git", "add", "-A", cwd=repo)
        run("git", "-c", "user.email=b@x", "-c", "user.name=B", "commit", "-qm", "init", cwd=repo)
        return repo

    def push(self, repo, name, refspec):
        run("git", "-c", f"http.extraHeader=Authorization: Bearer {self.token}", "push", "-q",
            f"{self.url}/git/{name}.git", refspec, cwd=repo)

    def agents(self, agent_type, count, slots):
        """`count` `salve agent` processes of `agent_type` (created here), each with `slots`."""
        token = run(self.salve, "agent-type", "create", agent_type, env=self.env).strip().splitlines()[-1]
        agents = []
        for i in range(count):
            data = os.path.join(self.work, f"agent-{agent_type}-{i}")
            agents.append(subprocess.Popen(
                [self.salve, "agent", "--server", self.url, "--name", f"{agent_type}-{i}",
                 "--slots", str(slots), "--data-dir", data],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**os.environ, "SALVE_AGENT_TOKEN": token}))
        while len([a for a in self.api("/api/v1/agents")["agents"]
                   if a["agent_type"] == agent_type and a["state"] == "connected"]) < count:
            time.sleep(0.1)
        return agents

    def stop(self):
        self.process.terminate()
        self.process.wait()

    def big_log_job(self, log_mb):
        """A failed job whose log is `log_mb` MB of build output and one error: its id."""
        repo = self.project("big", BIG_LOG.format(size=log_mb * 1000 * 1000))
        self.push(repo, "big", "main")
        while True:
            pipelines = self.api("/api/v1/pipelines?project=big")["pipelines"]
            if pipelines and pipelines[0]["state"] == "done":
                break
            time.sleep(0.5)
        return self.api(f"/api/v1/pipelines/{pipelines[0]['id']}")["blocks"][0]["jobs"][0]["id"]
