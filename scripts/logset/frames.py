"""How eight CI systems frame a job's commands in its log, after each one's documented format.

Each frame runs real commands (bash, in the case's folder) and writes their real output between
the markers that CI writes: Travis folds and `The command "X" exited with N.`, GitHub Actions
timestamps and `##[group]Run`/`##[error]Process completed with exit code N.`, GitLab sections and
`ERROR: Job failed`, Jenkins `sh -xe` traces and `Finished: FAILURE`, CircleCI's shell line and
`Exited with code`, Buildkite's `---`/`+++` headers and `Error: The command exited with status`,
Semaphore's JSON events, and a plain `bash -xe` script. The markers are each CI's; the output
between them is what the tools printed here.
"""
import datetime
import json
import os
import subprocess
import time


def run(cmd, cwd, env):
    """Runs `cmd` with bash; returns (output bytes, exit code). stderr is merged, as in CI."""
    p = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=900)
    return p.stdout, p.returncode


def stamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def lines_of(out):
    text = out.decode("utf-8", "replace")
    if text and not text.endswith("\n"):
        text += "\n"
    return text


class Frame:
    """Runs the phases of a job: `setup` (must pass), `script` (stops at the first failure, but
    Travis runs every script command), `after` (runs once the job failed)."""
    runs_all_script = False

    def __init__(self, cwd, env):
        self.cwd, self.env, self.out = cwd, env, []
        self.failed_cmd = None

    def w(self, s):
        self.out.append(s)

    def job(self, setup, script, after):
        self.begin()
        for cmd in setup:
            code = self.step("setup", cmd)
            if code != 0:
                raise SystemExit(f"setup command failed ({code}): {cmd}")
        failed = False
        for cmd in script:
            if failed and not self.runs_all_script:
                break
            code = self.step("script", cmd)
            if code != 0 and not failed:
                failed = True
                self.failed_cmd = cmd
        if not failed:
            raise SystemExit(f"the job passed: {script}")
        self.failed(after)
        return "".join(self.out)


class Travis(Frame):
    runs_all_script = True

    def begin(self):
        self.w("travis_fold:start:worker_info\r\x1b[0K\x1b[33;1mWorker information\x1b[0m\n")
        self.w("hostname: salve-logset\nversion: v6.2.0\ninstance: travis-job-logset\n")
        self.w("travis_fold:end:worker_info\r\x1b[0K\n")
        self.n = 0

    def step(self, phase, cmd):
        self.n += 1
        tid = f"{self.n:08x}"
        fold = phase == "setup"
        if fold:
            self.w(f"travis_fold:start:install.{self.n}\r\x1b[0K")
        self.w(f"travis_time:start:{tid}\r\x1b[0K$ {cmd}\n")
        out, code = run(cmd, self.cwd, self.env)
        self.w(lines_of(out))
        t = time.time_ns()
        self.w(f"\ntravis_time:end:{tid}:start={t},finish={t},duration=1000\r\x1b[0K")
        if fold:
            self.w(f"travis_fold:end:install.{self.n}\r\x1b[0K")
        if phase == "script":
            colour = "32" if code == 0 else "31"
            self.w(f"\x1b[{colour};1mThe command \"{cmd}\" exited with {code}.\x1b[0m\n")
        self.w("\n")
        return code

    def failed(self, after):
        for cmd in after:
            self.step("after", cmd)
        self.w("\nDone. Your build exited with 1.\n")


class GitHub(Frame):
    def begin(self):
        self.g("Current runner version: '2.311.0'")
        self.g("##[group]Operating System")
        self.g("Ubuntu\n22.04.3\nLTS")
        self.g("##[endgroup]")

    def g(self, text):
        for line in lines_of(text.encode()).splitlines():
            self.w(f"{stamp()} {line}\n")

    def step(self, phase, cmd):
        self.g(f"##[group]Run {cmd}")
        self.g(f"{cmd}\nshell: /usr/bin/bash -e {{0}}\nenv:\n  CI: true")
        self.g("##[endgroup]")
        out, code = run(cmd, self.cwd, self.env)
        self.g(lines_of(out))
        if code != 0:
            self.g(f"##[error]Process completed with exit code {code}.")
        return code

    def failed(self, after):
        for cmd in after:
            self.g(f"Post job cleanup.")
            out, _ = run(cmd, self.cwd, self.env)
            self.g(f"[command]/usr/bin/bash -c {cmd}")
            self.g(lines_of(out))
        self.g("Cleaning up orphan processes")


class GitLab(Frame):
    def begin(self):
        self.w("\x1b[0KRunning with gitlab-runner 16.6.1 (f5da3c5a)\x1b[0;m\n")
        self.w("\x1b[0K  on salve-logset runner, system ID: s_0123456789ab\x1b[0;m\n")
        self.section("prepare_executor", "Preparing the \"shell\" executor", "Using Shell (bash) executor...")
        self.section("get_sources", "Getting source from Git repository", "Fetching changes with git depth set to 20...\nChecking out 1a2b3c4d as detached HEAD (ref is main)...")
        self.w(f"section_start:{int(time.time())}:step_script\r\x1b[0K\x1b[0K\x1b[36;1mExecuting \"step_script\" stage of the job script\x1b[0;m\n")

    def section(self, name, title, body):
        t = int(time.time())
        self.w(f"section_start:{t}:{name}\r\x1b[0K\x1b[0K\x1b[36;1m{title}\x1b[0;m\n{body}\n")
        self.w(f"section_end:{t}:{name}\r\x1b[0K\n")

    def step(self, phase, cmd):
        self.w(f"\x1b[32;1m$ {cmd}\x1b[0;m\n")
        out, code = run(cmd, self.cwd, self.env)
        self.w(lines_of(out))
        return code

    def failed(self, after):
        t = int(time.time())
        self.w(f"section_end:{t}:step_script\r\x1b[0K\n")
        self.w(f"section_start:{t}:after_script\r\x1b[0K\x1b[0K\x1b[36;1mRunning after_script\x1b[0;m\n")
        self.w("\x1b[32;1mRunning after script...\x1b[0;m\n")
        for cmd in after:
            self.step("after", cmd)
        self.w(f"section_end:{t}:after_script\r\x1b[0K\n")
        self.section("upload_artifacts_on_failure", "Uploading artifacts for failed job",
                     "\x1b[32;1mUploading artifacts...\x1b[0;m\n\x1b[0;33mWARNING: reports/: no matching files. Ensure that the artifact path is relative to the working directory\x1b[0;m\n\x1b[31;1mERROR: No files to upload                         \x1b[0;m")
        self.section("cleanup_file_variables", "Cleaning up project directory and file based variables", "")
        self.w("\x1b[31;1mERROR: Job failed: exit code 1\n\x1b[0;m\n")


class Jenkins(Frame):
    """A freestyle job's `Execute shell` step: Jenkins runs it with `sh -xe`, so bash's own
    trace marks each command."""
    def job(self, setup, script, after):
        self.w("Started by user admin\nRunning as SYSTEM\nBuilding in workspace /var/lib/jenkins/workspace/logset\n")
        self.w("[logset] $ /bin/sh -xe /tmp/jenkins1234567890.sh\n")
        body = "\n".join(setup + script)
        out, code = run(f"bash -xe <<'JENKINS_STEP'\n{body}\nJENKINS_STEP", self.cwd, self.env)
        if code == 0:
            raise SystemExit(f"the job passed: {script}")
        self.w(lines_of(out))
        self.w("Build step 'Execute shell' marked build as failure\n")
        if after:
            out, _ = run(f"bash -x <<'JENKINS_STEP'\n" + "\n".join(after) + "\nJENKINS_STEP", self.cwd, self.env)
            self.w("[logset] $ /bin/sh -xe /tmp/jenkins0987654321.sh\n")
            self.w(lines_of(out))
        self.w("Finished: FAILURE\n")
        return "".join(self.out)


class SetX(Frame):
    """A plain `bash -xe` script: the trace is the only structure."""
    def job(self, setup, script, after):
        out, code = run("bash -xe <<'SCRIPT'\n" + "\n".join(setup + script) + "\nSCRIPT", self.cwd, self.env)
        if code == 0:
            raise SystemExit(f"the job passed: {script}")
        return lines_of(out)


class CircleCI(Frame):
    def begin(self):
        self.w("Spin up environment\nBuild-agent version 1.0.211437-4a0cac38 (2023-12-01T14:14:02+0000)\n")
        self.w("Creating a dedicated VPC\nUsing build environment variables\n")

    def step(self, phase, cmd):
        self.w(f"#!/bin/bash -eo pipefail\n{cmd}\n")
        out, code = run(cmd, self.cwd, self.env)
        self.w(lines_of(out))
        if code != 0:
            self.w(f"\nExited with code exit status {code}\nCircleCI received exit code {code}\n")
        return code

    def failed(self, after):
        # Steps with `when: always` run after the failure.
        for cmd in after:
            self.step("after", cmd)


class Buildkite(Frame):
    def begin(self):
        self.w("~~~ Preparing working directory\n$ cd /var/lib/buildkite-agent/builds/logset\n")
        self.w("# Host \"salve-logset\" already in list of known hosts\n$ git checkout -f 1a2b3c4d\n")

    def step(self, phase, cmd):
        head = "---" if phase == "setup" else "+++"
        self.w(f"{head} :hammer: Running {cmd.split()[0]}\n$ {cmd}\n")
        out, code = run(cmd, self.cwd, self.env)
        self.w(lines_of(out))
        if code != 0:
            self.w(f"\U0001f6a8 Error: The command exited with status {code}\n^^^ +++\n")
        return code

    def failed(self, after):
        for cmd in after:
            self.w(f"~~~ Running post-command hook\n$ {cmd}\n")
            out, _ = run(cmd, self.cwd, self.env)
            self.w(lines_of(out))
        self.w("user command error: exit status 1\n")


class Semaphore(Frame):
    """The agent's JSON events, as Semaphore's API serves a job's log."""
    def ev(self, **kw):
        kw.setdefault("timestamp", int(time.time()))
        self.w(json.dumps(kw, separators=(",", ":")) + "\n")

    def begin(self):
        self.ev(event="job_started")
        for name in ("Exporting environment variables", "Injecting Files"):
            self.ev(event="cmd_started", directive=name)
            self.ev(event="cmd_finished", directive=name, exit_code=0, started_at=0, finished_at=0)

    def step(self, phase, cmd):
        self.ev(event="cmd_started", directive=cmd)
        out, code = run(cmd, self.cwd, self.env)
        text = lines_of(out)
        chunk = []
        for line in text.splitlines(keepends=True):
            chunk.append(line)
            if len(chunk) == 20:
                self.ev(event="cmd_output", output="".join(chunk))
                chunk = []
        if chunk:
            self.ev(event="cmd_output", output="".join(chunk))
        self.ev(event="cmd_finished", directive=cmd, exit_code=code, started_at=0, finished_at=0)
        return code

    def failed(self, after):
        for cmd in after:
            self.step("after", cmd)
        self.ev(event="job_finished", result="failed")


FRAMES = {"travis": Travis, "github": GitHub, "gitlab": GitLab, "jenkins": Jenkins, "setx": SetX,
          "circleci": CircleCI, "buildkite": Buildkite, "semaphore": Semaphore}


def semaphore_text(log):
    """The text a Semaphore event log reads as (what `salve triage` prints lines of)."""
    out = []
    for raw in log.splitlines():
        try:
            e = json.loads(raw)
        except ValueError:
            out.append(raw + "\n")
            continue
        if e.get("event") == "cmd_started":
            out.append(f"$ {e['directive']}\n")
        elif e.get("event") == "cmd_output":
            out.append(e["output"])
        elif e.get("event") == "cmd_finished":
            out.append(f"The command \"{e['directive']}\" exited with {e['exit_code']}.\n")
    return "".join(out)
